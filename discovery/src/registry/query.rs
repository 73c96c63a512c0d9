use std::fmt;
use std::sync::Arc;

/// What to watch: a service name plus optional filters.
///
/// Two equal queries share one background watch. Every backend honours `tags` (an instance must
/// carry all of them) and `datacenter`; `filter` is a backend-specific expression (Consul's
/// [filtering language](https://developer.hashicorp.com/consul/api-docs/features/filtering))
/// that backends without an expression language report as an error through the [`Watch`](super::Watch).
///
/// ```
/// use sinew_discovery::registry::Query;
///
/// let query = Query::new("orders").tag("v2").datacenter("eu-west");
/// assert_eq!(query.service(), "orders");
/// assert_eq!(query.tags(), ["v2"]);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Query {
    service: Arc<str>,
    tags: Vec<String>,
    datacenter: Option<String>,
    filter: Option<String>,
    include_warning: bool,
}

impl Query {
    /// All passing instances of `service`.
    pub fn new(service: impl AsRef<str>) -> Self {
        Self {
            service: Arc::from(service.as_ref()),
            tags: Vec::new(),
            datacenter: None,
            filter: None,
            include_warning: false,
        }
    }

    /// Only instances carrying `tag` (repeatable: all tags must match).
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Instances in `datacenter` instead of the registry's default.
    #[must_use]
    pub fn datacenter(mut self, datacenter: impl Into<String>) -> Self {
        self.datacenter = Some(datacenter.into());
        self
    }

    /// A backend-specific filter expression (Consul: `Service.Meta.version == "2"`).
    #[must_use]
    pub fn filter(mut self, expression: impl Into<String>) -> Self {
        self.filter = Some(expression.into());
        self
    }

    /// Also return instances whose checks warn (never critical ones). Their weight is the
    /// registry's warning weight (Consul `Weights.Warning`).
    #[must_use]
    pub fn include_warning(mut self, include: bool) -> Self {
        self.include_warning = include;
        self
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The service name, shared.
    pub fn service_arc(&self) -> &Arc<str> {
        &self.service
    }

    /// Required tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The datacenter, if not the default.
    pub fn datacenter_name(&self) -> Option<&str> {
        self.datacenter.as_deref()
    }

    /// The filter expression.
    pub fn filter_expression(&self) -> Option<&str> {
        self.filter.as_deref()
    }

    /// Whether warning instances are included.
    pub fn includes_warning(&self) -> bool {
        self.include_warning
    }
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Query");
        d.field("service", &&*self.service);
        if !self.tags.is_empty() {
            d.field("tags", &self.tags);
        }
        if let Some(dc) = &self.datacenter {
            d.field("datacenter", dc);
        }
        if let Some(filter) = &self.filter {
            d.field("filter", filter);
        }
        if self.include_warning {
            d.field("include_warning", &true);
        }
        d.finish()
    }
}

impl From<&str> for Query {
    fn from(service: &str) -> Self {
        Self::new(service)
    }
}
