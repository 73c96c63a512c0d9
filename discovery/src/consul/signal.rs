/// Resolves on the first SIGTERM (Unix) or Ctrl-C, for graceful shutdown.
///
/// If a signal handler cannot be installed, that signal is ignored (and logged) and the
/// other still works.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn run() {
/// sinew_discovery::consul::shutdown_signal().await;
/// // stop accepting requests, then RegistrationHandle::shutdown
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
