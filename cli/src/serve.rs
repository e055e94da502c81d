//! `eventflow serve`: the HTTP API, the runtime and the scheduler in one process.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use eventflow_api::http;
use eventflow_local::plane::{Host, LocalTenants};
use eventflow_local::runtime::{RuntimeConfig, SystemClock};

use crate::runner::{Outcome, Refusal, http_client, open_store};

/// Serves until Ctrl-C or SIGTERM.
pub(crate) async fn serve(data_dir: &Path, port: u16) -> Outcome {
    let root = open_store(data_dir)?;
    let host = Host {
        clock: Arc::new(SystemClock),
        registry: eventflow_actions::registry(),
        actions: eventflow_actions::actions(http_client()?),
        config: RuntimeConfig::default(),
    };
    let tenants = Arc::new(LocalTenants::new(root, host));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            Refusal::io(format!(
                "eventflow: cannot listen on 127.0.0.1:{port}: {e}; choose another --port"
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    // The first line on stdout is the address, for scripts (and tests) that asked for port 0.
    println!("http://{addr}");
    eprintln!(
        "eventflow serves the API on http://{addr} (data in {}); Ctrl-C stops it",
        data_dir.display()
    );
    let app = http::router(Arc::clone(&tenants) as Arc<dyn eventflow_api::plane::Tenants>);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| Refusal::io(format!("eventflow: the server failed: {e}")))?;
    tenants.stop().await;
    eprintln!("eventflow: stopped; unfinished runs continue on the next start");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
