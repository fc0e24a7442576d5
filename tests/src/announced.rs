//! How the benchmark fixtures (`bench-upstream`, `bench-floor`) serve: bound
//! where asked, `TCP_NODELAY` on every connection (as providers and the local
//! server have it), and `listening on <addr>` on stdout once they accept, which
//! is how the bench learns their address.

use std::io::Write;

/// Serves `app` on `addr` (`127.0.0.1:0` for any free port) until the process ends.
pub async fn serve(addr: &str, app: axum::Router) {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let local = listener.local_addr().expect("local address");
    // No Nagle delay on small writes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let mut out = std::io::stdout();
    writeln!(out, "listening on {local}").expect("stdout");
    out.flush().expect("stdout");
    axum::serve(listener, app).await.expect("serve");
}
