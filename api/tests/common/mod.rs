//! What the API tests share: a real server on loopback.

use std::time::Duration;

/// Serves `config` on its own thread and Tokio runtime (the tests run
/// inside another runtime); returns the base URL once it listens.
pub fn serve(config: api::Config) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(api::serve(config, move |addr| tx.send(addr).unwrap()))
            .unwrap();
    });
    format!(
        "http://{}",
        rx.recv_timeout(Duration::from_secs(30)).unwrap()
    )
}
