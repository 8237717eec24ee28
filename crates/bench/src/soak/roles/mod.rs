//! The worker roles, one module each, and the worker process's entry point
//! (`moat-bench soak-worker --spec JSON`).

pub(crate) mod device;
pub(crate) mod flood;
pub(crate) mod subscriber;

use std::io::BufRead;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::soak::protocol::{Phase, WorkerSpec};
use crate::soak::roles::device::devices;
use crate::soak::roles::flood::flood;
use crate::soak::roles::subscriber::subscribers;

/// `moat-bench soak-worker --spec JSON`.
pub fn worker_main(spec: &str) -> Result<()> {
    let spec: WorkerSpec = serde_json::from_str(spec).context("soak worker spec")?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let (final_tx, final_rx) = watch::channel(false);
    // Commands on stdin: `stop`, `final`; EOF means quit.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(l) = line else { break };
            match l.trim() {
                "stop" => {
                    let _ = phase_tx.send(Phase::Stop);
                }
                "final" => {
                    let _ = final_tx.send(true);
                }
                _ => {}
            }
        }
        let _ = phase_tx.send(Phase::Quit);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match spec {
            WorkerSpec::Devices(s) => devices(s, phase_rx).await,
            WorkerSpec::Subscribers(s) => subscribers(s, phase_rx, final_rx).await,
            WorkerSpec::Flood(s) => flood(s, phase_rx).await,
        }
    })
}
