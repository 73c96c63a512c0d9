//! `reference-system`: the Sinew reference system in one binary.
//!
//! ```text
//! reference-system [up]                 every service in this process (embedded defaults)
//! reference-system demo                 start everything, run the 8-step scenario, print a report
//! reference-system serve <service>      one service alone (gateway, user, post, comment, email,
//!                                       order, inventory, payment, notification)
//! reference-system dlq list <queue>     dead letters of a subscription queue (e.g. email.welcome)
//! reference-system dlq replay <queue>   move them back to the queue
//! ```

use std::io::Write as _;
use std::process::ExitCode;

use sinew_reference_system::system::{self, Error, System, SystemConfig};
use sinew_reference_system::{bus::Bus, demo};
use sinew_tracing_kit::init::{self, Config};

fn out(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = match args.as_slice() {
        ["serve", name] => (*name).to_owned(),
        _ => "reference-system".to_owned(),
    };
    // The demo keeps logs to warnings so its report stays readable.
    let filter = if args.first() == Some(&"demo") {
        "error"
    } else {
        "info"
    };
    let guard = Config::from_env().and_then(|b| {
        let b = b
            .service_name(service)
            .service_version(env!("CARGO_PKG_VERSION"));
        let b = if std::env::var_os("RUST_LOG").is_none() {
            b.filter(filter)
        } else {
            b
        };
        b.build()
    });
    let guard = match guard
        .map_err(Error::from)
        .and_then(|c| init::init(c).map_err(Error::from))
    {
        Ok(guard) => guard,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "cannot set up tracing: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&args).await;
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[&str]) -> Result<(), Error> {
    let config = SystemConfig::from_env()?;
    match args {
        [] | ["up"] => {
            let mut config = config;
            if std::env::var_os("GATEWAY_ADDR").is_none() {
                config.gateway_addr = ([127, 0, 0, 1], 3000).into();
            }
            if std::env::var_os("GRPC_ADDR").is_none() {
                config.grpc_addr = ([127, 0, 0, 1], 50051).into();
            }
            let system = System::start(config).await?;
            out(&format!(
                "gateway on {}, gRPC UserService on {}. Ctrl-C stops.\n\
                 Try: curl -s -X POST {}/auth/token -H 'content-type: application/json' -d '{{\"username\":\"demo\",\"password\":\"sinew-demo\"}}'\n",
                system.gateway.url(),
                system.grpc_addr,
                system.gateway.url(),
            ));
            system::shutdown_signal().await;
            system.shutdown().await;
            Ok(())
        }
        ["demo"] => {
            let started = tokio::time::Instant::now();
            let mut system = System::start(config).await?;
            out(&format!("Sinew reference system: every service in one process, gateway on {}\n\n", system.gateway.url()));
            let report = demo::run(&mut system).await;
            system.shutdown().await;
            let report = report?;
            out(&format!("{report}\nAll 8 steps passed in {:.1} s.\n", started.elapsed().as_secs_f64()));
            Ok(())
        }
        ["serve", name] => system::serve(name, config).await,
        ["dlq", action @ ("list" | "replay"), queue] => {
            let bus = Bus::connect(&config, "reference-system-dlq").await?;
            if config.amqp_url.is_none() {
                out("note: no AMQP_URL, so this is a fresh in-memory broker; set AMQP_URL to manage RabbitMQ's queues\n");
            }
            if *action == "list" {
                for letter in bus.dead_letters(queue, 100).await? {
                    out(&format!(
                        "{} {} type={} reason={:?} attempts={}\n",
                        letter.message().message_id(),
                        letter.original_routing_key().unwrap_or_default(),
                        letter.error_type().unwrap_or_default(),
                        letter.error_message().unwrap_or_default(),
                        letter.attempts().unwrap_or(0),
                    ));
                }
            } else {
                let moved = bus.replay(queue, usize::MAX).await?;
                out(&format!("replayed {moved} message(s) to {queue}\n"));
            }
            Ok(())
        }
        _ => Err("usage: reference-system [up | demo | serve <service> | dlq list <queue> | dlq replay <queue>]".into()),
    }
}
