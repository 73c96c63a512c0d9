//! AMQP topic matching: `*` matches exactly one word, `#` zero or more.
//!
//! ```
//! use sinew_messaging::topic::matches;
//!
//! assert!(matches("user.*", "user.created"));
//! assert!(!matches("user.*", "user.email.changed"));
//! assert!(matches("user.#", "user"));
//! assert!(matches("#.changed", "user.email.changed"));
//! ```

/// Whether routing key `key` matches binding `pattern`. Words are separated by `.`.
pub fn matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    // Dynamic programming over (pattern position, key position); `#` absorbs any run.
    let mut reachable = vec![false; key.len() + 1];
    reachable[0] = true;
    for word in &pattern {
        let mut next = vec![false; key.len() + 1];
        for i in 0..=key.len() {
            if !reachable[i] {
                continue;
            }
            match *word {
                "#" => next[i..].iter_mut().for_each(|r| *r = true),
                "*" => {
                    if i < key.len() {
                        next[i + 1] = true;
                    }
                }
                literal => {
                    if i < key.len() && key[i] == literal {
                        next[i + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[key.len()]
}

/// Whether `pattern` is a valid binding key: non-empty words, no `*`/`#` inside a word.
pub fn is_valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 255
        && pattern.split('.').all(|w| {
            !w.is_empty() && (w == "*" || w == "#" || !(w.contains('*') || w.contains('#')))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("user.created", "user.created", true),
            ("user.created", "user.deleted", false),
            ("user.*", "user.created", true),
            ("user.*", "user", false),
            ("*.created", "order.created", true),
            ("#", "anything.at.all", true),
            ("#", "", true),
            ("user.#", "user", true),
            ("user.#.done", "user.done", true),
            ("user.#.done", "user.a.b.done", true),
            ("user.#.done", "user.a.b.don", false),
            ("#.#", "a", true),
            ("*.*", "a", false),
        ];
        for (p, k, want) in cases {
            assert_eq!(matches(p, k), want, "{p} vs {k}");
        }
    }

    #[test]
    fn validity() {
        assert!(is_valid_pattern("user.*"));
        assert!(is_valid_pattern("#"));
        assert!(!is_valid_pattern(""));
        assert!(!is_valid_pattern("user..created"));
        assert!(!is_valid_pattern("user.cre*"));
    }
}
