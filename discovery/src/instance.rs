//! One reachable replica of a service.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The unique identifier of an instance within its registry (Consul's service `ID`).
///
/// Cheap to clone (an `Arc<str>`), hashable and ordered, so it serves as the key of a
/// [`tower::discover::Change`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    /// Wraps an identifier.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for InstanceId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for InstanceId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

/// The health of an instance as its registry reports it.
///
/// Registries only hand out instances that may receive traffic, so there is no `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Health {
    /// Every check passes.
    #[default]
    Passing,
    /// At least one check warns (and none is critical). Only returned when the query asks for
    /// warning instances too.
    Warning,
}

/// One reachable replica of a service: where it listens, its tags and metadata, its
/// load-balancing weight and its health.
///
/// Build one with [`Instance::new`] and the consuming setters; registries build them from
/// their own data (the Consul watch resolves the address from `Service.Address`, then
/// `Service.TaggedAddresses`, then `Node.Address`).
///
/// ```
/// use sinew_discovery::Instance;
///
/// let instance = Instance::new("orders-1", "orders", "::1", 8080).weight(5).tag("v2");
/// assert_eq!(instance.authority(), "[::1]:8080");
/// assert_eq!(instance.url("http"), "http://[::1]:8080");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Instance {
    /// The instance's unique ID.
    pub id: InstanceId,
    /// The service it belongs to.
    pub service: Arc<str>,
    /// Host name or IP address, never bracketed (see [`Instance::authority`]).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Tags, in registration order.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Load-balancing weight, at least 1 (Consul: `Weights.Passing`, or `Weights.Warning` for a
    /// warning instance).
    pub weight: u32,
    /// Health.
    pub health: Health,
    /// The node (machine) it runs on, when known.
    pub node: Option<String>,
    /// Its datacenter, when known.
    pub datacenter: Option<String>,
}

impl Instance {
    /// An instance with weight 1, passing, no tags, metadata, node or datacenter.
    ///
    /// A bracketed IPv6 host (`"[::1]"`) is stored without its brackets.
    pub fn new(
        id: impl Into<InstanceId>,
        service: impl AsRef<str>,
        host: impl Into<String>,
        port: u16,
    ) -> Self {
        let mut host = host.into();
        if host.starts_with('[') && host.ends_with(']') && host.len() >= 2 {
            host = host[1..host.len() - 1].to_owned();
        }
        Self {
            id: id.into(),
            service: Arc::from(service.as_ref()),
            host,
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weight: 1,
            health: Health::Passing,
            node: None,
            datacenter: None,
        }
    }

    /// Sets the load-balancing weight; 0 is raised to 1.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds a metadata entry.
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Sets the health.
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Sets the node name.
    #[must_use]
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Sets the datacenter.
    #[must_use]
    pub fn datacenter(mut self, datacenter: impl Into<String>) -> Self {
        self.datacenter = Some(datacenter.into());
        self
    }

    /// `host:port`, with an IPv6 host in brackets (`[::1]:8080`).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://host:port`, with an IPv6 host in brackets.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.authority())
    }

    /// The socket address, when the host is an IP literal (host names need resolving).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// Whether the instance carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Whether two versions of an instance point at the same endpoint (same host and port).
    /// When they do not, a balancer must replace its connection.
    pub fn same_endpoint(&self, other: &Self) -> bool {
        self.host == other.host && self.port == other.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_bracketed_once() {
        let a = Instance::new("a", "s", "[fe80::1]", 80);
        assert_eq!(a.host, "fe80::1");
        assert_eq!(a.authority(), "[fe80::1]:80");
        assert_eq!(
            a.socket_addr(),
            Some("[fe80::1]:80".parse().expect("literal"))
        );
        let b = Instance::new("b", "s", "10.0.0.1", 81);
        assert_eq!(b.authority(), "10.0.0.1:81");
        let c = Instance::new("c", "s", "orders.internal", 82);
        assert_eq!(c.socket_addr(), None);
        assert_eq!(c.url("https"), "https://orders.internal:82");
    }

    #[test]
    fn weight_is_at_least_one() {
        assert_eq!(Instance::new("a", "s", "h", 1).weight(0).weight, 1);
    }
}
