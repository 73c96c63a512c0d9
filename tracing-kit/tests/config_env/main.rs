//! `Config` from `OTEL_*` variables, through a lookup function (the process environment is
//! never touched), and the builder's validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sinew_tracing_kit::init::{Config, ConfigBuilder, ConfigError, LogFormat, Protocol, Sampler};

fn from(vars: &[(&str, &str)]) -> Result<ConfigBuilder, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ConfigBuilder::from_env_with(move |key| {
        vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    })
}

#[test]
fn defaults() {
    let config = from(&[]).unwrap().build().unwrap();
    assert_eq!(config.service_name(), "unknown_service");
    assert_eq!(config.endpoint(), None);
    assert_eq!(config.protocol(), Protocol::HttpProtobuf);
    assert_eq!(config.sampler(), Sampler::ParentBasedAlwaysOn);
    assert_eq!(config.log_format(), LogFormat::Human);
    assert_eq!(config.filter(), "info");
    assert_eq!(config.shutdown_deadline(), Duration::from_secs(5));
}

#[test]
fn every_variable() {
    let config = from(&[
        ("OTEL_SERVICE_NAME", "orders"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=2.0, deployment.environment.name=prod,team=a%2Cb%3Dc,note=x%20y",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("RUST_LOG", "warn,orders=debug"),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(config.service_name(), "orders");
    assert_eq!(config.endpoint(), Some("http://collector:4317"));
    assert_eq!(config.protocol(), Protocol::Grpc);
    assert_eq!(config.sampler(), Sampler::TraceIdRatio(0.1));
    assert_eq!(config.filter(), "warn,orders=debug");
    assert_eq!(
        config.resource_attributes(),
        [
            ("team".to_owned(), "a,b=c".to_owned()),
            ("note".to_owned(), "x y".to_owned()),
        ]
    );
}

#[test]
fn service_name_precedence() {
    let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs");
    let config = from(&[attrs]).unwrap().build().unwrap();
    assert_eq!(config.service_name(), "from-attrs");
    let config = from(&[attrs, ("OTEL_SERVICE_NAME", "from-name")])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(config.service_name(), "from-name");
    // Code wins over the environment.
    let config = from(&[("OTEL_SERVICE_NAME", "env")])
        .unwrap()
        .service_name("code")
        .build()
        .unwrap();
    assert_eq!(config.service_name(), "code");
}

#[test]
fn samplers() {
    let sampler = |name: &str, arg: Option<&str>| {
        let mut vars = vec![("OTEL_TRACES_SAMPLER", name)];
        if let Some(arg) = arg {
            vars.push(("OTEL_TRACES_SAMPLER_ARG", arg));
        }
        from(&vars).map(|b| b.build().unwrap().sampler())
    };
    assert_eq!(sampler("always_on", None).unwrap(), Sampler::AlwaysOn);
    assert_eq!(sampler("always_off", None).unwrap(), Sampler::AlwaysOff);
    assert_eq!(
        sampler("traceidratio", None).unwrap(),
        Sampler::TraceIdRatio(1.0)
    );
    assert_eq!(
        sampler("parentbased_always_on", None).unwrap(),
        Sampler::ParentBasedAlwaysOn
    );
    assert_eq!(
        sampler("parentbased_always_off", None).unwrap(),
        Sampler::ParentBasedAlwaysOff
    );
    assert_eq!(
        sampler("parentbased_traceidratio", Some("0")).unwrap(),
        Sampler::ParentBasedTraceIdRatio(0.0)
    );
    assert!(matches!(
        sampler("traceidratio", Some("2")),
        Err(ConfigError::InvalidRatio(r)) if r == 2.0
    ));
    assert!(matches!(
        sampler("traceidratio", Some("-0.1")),
        Err(ConfigError::InvalidRatio(_))
    ));
    assert!(matches!(
        sampler("traceidratio", Some("lots")),
        Err(ConfigError::InvalidSamplerArg(a)) if a == "lots"
    ));
    assert!(matches!(
        sampler("xray", None),
        Err(ConfigError::UnknownSampler(s)) if s == "xray"
    ));
}

#[test]
fn protocols() {
    let protocol = |p: &str| from(&[("OTEL_EXPORTER_OTLP_PROTOCOL", p)]);
    assert_eq!(
        protocol("http/protobuf")
            .unwrap()
            .build()
            .unwrap()
            .protocol(),
        Protocol::HttpProtobuf
    );
    assert_eq!(
        protocol(" GRPC ").unwrap().build().unwrap().protocol(),
        Protocol::Grpc
    );
    assert!(matches!(
        protocol("http/json"),
        Err(ConfigError::UnsupportedProtocol(p)) if p == "http/json"
    ));
}

#[test]
fn bad_values_are_typed_errors() {
    assert!(matches!(
        from(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")]),
        Err(ConfigError::InvalidResourceAttribute(_))
    ));
    assert!(matches!(
        from(&[("OTEL_RESOURCE_ATTRIBUTES", "k=bad%zz")]),
        Err(ConfigError::InvalidResourceAttribute(_))
    ));
    assert!(matches!(
        from(&[("OTEL_RESOURCE_ATTRIBUTES", "=v")]),
        Err(ConfigError::InvalidResourceAttribute(_))
    ));
    assert!(matches!(
        from(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]),
        Err(ConfigError::InvalidTimeout(_))
    ));
    assert!(matches!(
        from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")])
            .unwrap()
            .build(),
        Err(ConfigError::InvalidEndpoint(_))
    ));
    assert!(matches!(
        from(&[("RUST_LOG", "a=notalevel")]).unwrap().build(),
        Err(ConfigError::InvalidFilter { .. })
    ));
    // Empty variables count as unset.
    let config = from(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ("OTEL_SERVICE_NAME", " "),
    ])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(config.endpoint(), None);
    assert_eq!(config.service_name(), "unknown_service");
}

#[test]
fn builder_validation() {
    let err = |b: ConfigBuilder| b.build().unwrap_err();
    assert!(matches!(
        err(Config::builder().sampler(Sampler::TraceIdRatio(f64::NAN))),
        ConfigError::InvalidRatio(_)
    ));
    assert!(matches!(
        err(Config::builder().sampler(Sampler::ParentBasedTraceIdRatio(1.01))),
        ConfigError::InvalidRatio(_)
    ));
    assert!(matches!(
        err(Config::builder().service_name("")),
        ConfigError::EmptyServiceName
    ));
    assert!(matches!(
        err(Config::builder().shutdown_deadline(Duration::ZERO)),
        ConfigError::ZeroDuration(_)
    ));
    assert!(matches!(
        err(Config::builder().export_timeout(Duration::ZERO)),
        ConfigError::ZeroDuration(_)
    ));
    assert!(matches!(
        err(Config::builder().endpoint("ftp://x")),
        ConfigError::InvalidEndpoint(_)
    ));
    let config = Config::builder()
        .endpoint("http://x:4318")
        .no_endpoint()
        .build()
        .unwrap();
    assert_eq!(config.endpoint(), None);
}
