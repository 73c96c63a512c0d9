//! A small subset of Consul's filter language, enough for tests:
//! `<selector> == "v"`, `<selector> != "v"`, `<selector> contains "v"`, joined by `and`.
//! Selectors: `Service.ID`, `Service.Service`, `Service.Address`, `Service.Port`,
//! `Service.Tags`, `Service.Meta.<key>`, `Node.Node`, `Node.Address`.

use serde_json::Value;

/// Parses and evaluates `expression` on a health entry (`{"Node": .., "Service": ..}`).
/// `Err` carries Consul's style of message for an expression it cannot parse.
pub(crate) fn matches(expression: &str, entry: &Value) -> Result<bool, String> {
    for clause in expression.split(" and ") {
        if !clause_matches(clause.trim(), entry)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn clause_matches(clause: &str, entry: &Value) -> Result<bool, String> {
    let err =
        || format!("Failed to create boolean expression evaluator: unsupported filter `{clause}`");
    let (selector, op, rest) = if let Some((s, r)) = clause.split_once(" contains ") {
        (s, "contains", r)
    } else if let Some((s, r)) = clause.split_once("!=") {
        (s, "!=", r)
    } else if let Some((s, r)) = clause.split_once("==") {
        (s, "==", r)
    } else {
        return Err(err());
    };
    let literal = rest.trim();
    let literal = literal
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .ok_or_else(err)?;
    let mut value = entry;
    for part in selector.trim().split('.') {
        value = match value.get(part) {
            Some(v) => v,
            None => &Value::Null,
        };
    }
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    };
    Ok(match op {
        "contains" => match value {
            Value::Array(items) => items.iter().any(|i| as_text(i) == literal),
            Value::String(s) => s.contains(literal),
            _ => false,
        },
        "==" => as_text(value) == literal,
        _ => as_text(value) != literal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset() {
        let entry = serde_json::json!({
            "Node": {"Node": "n1"},
            "Service": {"ID": "a", "Tags": ["v1", "eu"], "Meta": {"version": "2"}, "Port": 80}
        });
        assert_eq!(matches(r#"Service.Tags contains "v1""#, &entry), Ok(true));
        assert_eq!(
            matches(
                r#"Service.Meta.version == "2" and Node.Node != "n2""#,
                &entry
            ),
            Ok(true)
        );
        assert_eq!(matches(r#"Service.Port == "81""#, &entry), Ok(false));
        assert!(matches("Service.Port > 1", &entry).is_err());
    }
}
