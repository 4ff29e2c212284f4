//! `KeyRotationActor`: the state of re-encryption after a key rotation.
//!
//! **State**: the phase (idle / running / paused / done), the progress of the
//! current or last walk, its rate; the pause switch the walk checks between
//! batches. **Lifetime**: the whole process; one instance. **Who holds its
//! address**: `AppState` (the admin endpoints) and the `reencrypt` job.
//!
//! The walk itself runs on the main runtime (`workers::jobs::reencrypt`, over
//! [`crate::jobs::Reencryption`]) and reports after every batch. Values per
//! key id are counted from the database (by key-id columns, never by trial
//! decryption) when the status is asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix::prelude::*;
use serde::Serialize;
use workers::jobs::reencrypt::{ReencryptConfig, ReencryptReport};

use crate::app::Deps;
use crate::jobs::Reencryption;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Idle,
    Running,
    Paused,
    Done,
}

/// What `GET /admin/keys` reports about re-encryption.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RotationProgress {
    pub state: Phase,
    /// Rows looked at by the current (or last) walk.
    pub examined: u64,
    pub reencrypted: u64,
    /// Values no configured key could open (left untouched).
    pub undecryptable: Vec<UndecryptableValue>,
    /// Values re-encrypted per second by the current (or last) walk.
    pub rate_per_second: f64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UndecryptableValue {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: String,
}

/// Start (or resume) re-encryption and wait for the walk to end; `Err` when
/// one is already running.
#[derive(Message)]
#[rtype(result = "Result<ReencryptReport, String>")]
pub struct Run;

/// Stop the running walk after its current batch.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Pause;

#[derive(Message)]
#[rtype(result = "RotationProgress")]
pub struct Progress;

#[derive(Message)]
#[rtype(result = "()")]
struct Report(ReencryptReport);

pub struct KeyRotationActor {
    deps: Deps,
    config: ReencryptConfig,
    phase: Phase,
    pause: Arc<AtomicBool>,
    report: ReencryptReport,
    started: Option<Instant>,
    elapsed_secs: f64,
}

impl KeyRotationActor {
    pub fn new(deps: Deps, config: ReencryptConfig) -> Self {
        Self {
            deps,
            config,
            phase: Phase::Idle,
            pause: Arc::new(AtomicBool::new(false)),
            report: ReencryptReport::default(),
            started: None,
            elapsed_secs: 0.0,
        }
    }
}

impl Actor for KeyRotationActor {
    type Context = Context<Self>;
}

impl Handler<Run> for KeyRotationActor {
    type Result = ResponseActFuture<Self, Result<ReencryptReport, String>>;

    fn handle(&mut self, _msg: Run, ctx: &mut Self::Context) -> Self::Result {
        if self.phase == Phase::Running {
            return Box::pin(actix::fut::ready(Err("re-encryption is already running".to_owned())));
        }
        self.phase = Phase::Running;
        self.pause.store(false, Ordering::Relaxed);
        self.report = ReencryptReport::default();
        self.started = Some(Instant::now());
        let (deps, config, pause, me) = (self.deps.clone(), self.config.clone(), self.pause.clone(), ctx.address());
        let walk = self.deps.runtime.spawn(async move {
            let store = Reencryption { store: deps.store.clone(), keyring: deps.keyring.clone(), dry_run: false };
            workers::jobs::reencrypt::run_once(&store, &config, &pause, |report| me.do_send(Report(report.clone())))
                .await
        });
        Box::pin(actix::fut::wrap_future(walk).map(|result, act: &mut Self, _| {
            act.elapsed_secs = act.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            match result {
                Ok(Ok(report)) => {
                    act.phase = if report.finished { Phase::Done } else { Phase::Paused };
                    act.report = report.clone();
                    Ok(report)
                }
                Ok(Err(err)) => {
                    act.phase = Phase::Paused;
                    Err(err.to_string())
                }
                Err(join) => {
                    act.phase = Phase::Paused;
                    Err(format!("the re-encryption task failed: {join}"))
                }
            }
        }))
    }
}

impl Handler<Report> for KeyRotationActor {
    type Result = ();

    fn handle(&mut self, msg: Report, _ctx: &mut Self::Context) {
        metrics::gauge!(crate::telemetry::metrics::REENCRYPTION_UNDECRYPTABLE).set(msg.0.undecryptable.len() as f64);
        self.report = msg.0;
    }
}

impl Handler<Pause> for KeyRotationActor {
    type Result = bool;

    fn handle(&mut self, _msg: Pause, _ctx: &mut Self::Context) -> bool {
        let running = self.phase == Phase::Running;
        self.pause.store(true, Ordering::Relaxed);
        running
    }
}

impl Handler<Progress> for KeyRotationActor {
    type Result = MessageResult<Progress>;

    fn handle(&mut self, _msg: Progress, _ctx: &mut Self::Context) -> Self::Result {
        let elapsed = match (self.phase, self.started) {
            (Phase::Running, Some(started)) => started.elapsed().as_secs_f64(),
            _ => self.elapsed_secs,
        };
        MessageResult(RotationProgress {
            state: self.phase,
            examined: self.report.examined,
            reencrypted: self.report.reencrypted,
            undecryptable: self
                .report
                .undecryptable
                .iter()
                .map(|u| UndecryptableValue { table: u.table, column: u.column, row_id: u.row.clone() })
                .collect(),
            rate_per_second: if elapsed > 0.0 { self.report.reencrypted as f64 / elapsed } else { 0.0 },
        })
    }
}
