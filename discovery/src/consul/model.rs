//! Consul's `/v1/health/service` JSON, and how an entry becomes an [`Instance`].

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::instance::{Health, Instance};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthEntry {
    pub(crate) node: Node,
    pub(crate) service: Service,
    #[serde(default)]
    pub(crate) checks: Option<Vec<CheckEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Node {
    #[serde(default)]
    pub(crate) node: String,
    #[serde(default)]
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) datacenter: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Service {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) tagged_addresses: Option<HashMap<String, ServiceAddress>>,
    #[serde(default)]
    pub(crate) meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) port: u16,
    #[serde(default)]
    pub(crate) weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceAddress {
    #[serde(default)]
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Weights {
    #[serde(default = "one")]
    pub(crate) passing: u32,
    #[serde(default = "one")]
    pub(crate) warning: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckEntry {
    #[serde(default)]
    pub(crate) status: String,
}

/// Tagged-address keys, in order of preference, tried when `Service.Address` is empty.
const TAGGED_PREFERENCE: [&str; 6] = ["lan", "lan_ipv4", "lan_ipv6", "wan", "wan_ipv4", "wan_ipv6"];

impl HealthEntry {
    /// The instance, or `None` when any check is critical, when it is warning and warnings are
    /// not wanted (or its warning weight is 0), or when no address can be found.
    pub(crate) fn into_instance(self, include_warning: bool) -> Option<Instance> {
        let mut health = Health::Passing;
        for check in self.checks.iter().flatten() {
            match check.status.as_str() {
                "passing" => {}
                "warning" => health = Health::Warning,
                // critical, maintenance, or anything unknown: not servable
                _ => return None,
            }
        }
        if health == Health::Warning && !include_warning {
            return None;
        }
        let weight = match (&self.service.weights, health) {
            (None, _) => 1,
            (Some(w), Health::Passing) => w.passing,
            (Some(w), Health::Warning) => w.warning,
        };
        if weight == 0 {
            return None;
        }
        let (host, port) = resolve_address(&self.service, &self.node)?;
        let mut instance = Instance::new(self.service.id, &self.service.service, host, port)
            .weight(weight)
            .health(health);
        instance.tags = self.service.tags.unwrap_or_default();
        instance.meta = self.service.meta.unwrap_or_default();
        if !self.node.node.is_empty() {
            instance.node = Some(self.node.node);
        }
        if !self.node.datacenter.is_empty() {
            instance.datacenter = Some(self.node.datacenter);
        }
        Some(instance)
    }
}

/// `Service.Address`, then `Service.TaggedAddresses` (lan before wan), then `Node.Address`
/// (Consul leaves `Service.Address` empty when a service registers without one; see
/// hashicorp/consul#4599).
fn resolve_address(service: &Service, node: &Node) -> Option<(String, u16)> {
    if !service.address.is_empty() {
        return Some((service.address.clone(), service.port));
    }
    if let Some(tagged) = &service.tagged_addresses {
        for key in TAGGED_PREFERENCE {
            if let Some(a) = tagged.get(key)
                && !a.address.is_empty()
            {
                let port = if a.port == 0 { service.port } else { a.port };
                return Some((a.address.clone(), port));
            }
        }
    }
    if !node.address.is_empty() {
        return Some((node.address.clone(), service.port));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: serde_json::Value) -> HealthEntry {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn address_falls_back_in_order() {
        let e = entry(serde_json::json!({
            "Node": {"Node": "n1", "Address": "10.0.0.9", "Datacenter": "dc1"},
            "Service": {"ID": "a", "Service": "s", "Address": "", "Port": 80, "Tags": null, "Meta": null,
                        "TaggedAddresses": {"wan": {"Address": "1.2.3.4", "Port": 0},
                                            "lan_ipv6": {"Address": "fd00::5", "Port": 81}}},
            "Checks": [{"Status": "passing"}]
        }));
        let i = e.into_instance(false).unwrap();
        assert_eq!(i.authority(), "[fd00::5]:81");

        let e = entry(serde_json::json!({
            "Node": {"Node": "n1", "Address": "10.0.0.9"},
            "Service": {"ID": "a", "Service": "s", "Port": 80}
        }));
        assert_eq!(e.into_instance(false).unwrap().authority(), "10.0.0.9:80");
    }

    #[test]
    fn warning_uses_warning_weight_and_critical_is_dropped() {
        let json = |status: &str| {
            serde_json::json!({
                "Node": {"Node": "n1", "Address": "10.0.0.9"},
                "Service": {"ID": "a", "Service": "s", "Address": "10.0.0.1", "Port": 80,
                            "Weights": {"Passing": 10, "Warning": 2}},
                "Checks": [{"Status": "passing"}, {"Status": status}]
            })
        };
        assert_eq!(
            entry(json("passing")).into_instance(false).unwrap().weight,
            10
        );
        assert!(entry(json("warning")).into_instance(false).is_none());
        let w = entry(json("warning")).into_instance(true).unwrap();
        assert_eq!((w.weight, w.health), (2, Health::Warning));
        assert!(entry(json("critical")).into_instance(true).is_none());
    }
}
