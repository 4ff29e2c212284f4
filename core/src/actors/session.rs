//! `SessionActor`: the authorization flows' lifecycle.
//!
//! **State**: one `watch` channel per session someone is long-polling; a tick
//! on it means "look again". **Lifetime**: the whole process; one instance.
//! **Who holds its address**: `AppState` (handlers) and the event relay.
//!
//! Flows themselves (create, open link, callback) run on the main runtime
//! concurrently (`ResponseFuture`, not atomic): their once-only steps are
//! guarded in the database, which also covers other replicas. The actor owns
//! what must live in one place: who is waiting for which session.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;
use url::Url;
use uuid::Uuid;

use crate::events::Event;
use crate::services::Deps;
use crate::sessions::{self, CallbackOutcome, CallbackParams, FlowError, LinkError, LinkInfo, StartRequest, Started};
use crate::store::sessions::SessionRecord;

/// How often channels nobody waits on are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Message)]
#[rtype(result = "Result<Started, FlowError>")]
pub struct Start(pub StartRequest);

/// What a connect link is for (its page), without using it.
#[derive(Message)]
#[rtype(result = "Result<LinkInfo, LinkError>")]
pub struct ShowLink(pub String);

/// Uses a connect link: the provider URL to send the browser to.
#[derive(Message)]
#[rtype(result = "Result<Url, LinkError>")]
pub struct OpenLink(pub String);

#[derive(Message)]
#[rtype(result = "CallbackOutcome")]
pub struct Callback {
    pub provider: String,
    pub params: CallbackParams,
}

/// The session's status, after waiting up to `wait` for it to leave `pending`.
#[derive(Message)]
#[rtype(result = "Result<SessionRecord, FlowError>")]
pub struct GetStatus {
    pub id: Uuid,
    pub wait: Duration,
    /// The asking client: only the one that started the flow may read it.
    pub client: String,
}

/// Something happened to a session (or, with `None`, maybe to any).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake(pub Option<Uuid>);

pub struct SessionActor {
    deps: Deps,
    watchers: HashMap<Uuid, watch::Sender<u64>>,
}

impl SessionActor {
    pub(crate) fn new(deps: Deps) -> Self {
        Self { deps, watchers: HashMap::new() }
    }

    /// Relays session events to the actor until the bus closes or `stop`.
    pub(crate) fn spawn_relay(
        deps: &Deps,
        addr: Addr<Self>,
        mut stop: crate::events::Stop,
    ) -> tokio::task::JoinHandle<()> {
        let mut events = deps.events.subscribe();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    () = stop.requested() => return,
                    event = events.recv() => event,
                };
                match event {
                    Ok(Event::Session { id }) => addr.do_send(Wake(Some(id))),
                    Ok(Event::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        addr.do_send(Wake(None))
                    }
                    Ok(Event::Credential { .. } | Event::Clients | Event::Providers) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    fn run<T, F>(&self, work: F) -> ResponseFuture<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
        T: From<TaskFailed>,
    {
        let handle = self.deps.runtime.spawn(work);
        Box::pin(async move { handle.await.unwrap_or_else(|e| T::from(TaskFailed(e))) })
    }
}

/// A flow's task panicked or was cancelled.
pub struct TaskFailed(tokio::task::JoinError);

impl From<TaskFailed> for Result<Started, FlowError> {
    fn from(e: TaskFailed) -> Self {
        Err(FlowError::Task(e.0))
    }
}
impl From<TaskFailed> for Result<LinkInfo, LinkError> {
    fn from(e: TaskFailed) -> Self {
        Err(LinkError::Task(e.0))
    }
}
impl From<TaskFailed> for Result<Url, LinkError> {
    fn from(e: TaskFailed) -> Self {
        Err(LinkError::Task(e.0))
    }
}
impl From<TaskFailed> for Result<SessionRecord, FlowError> {
    fn from(e: TaskFailed) -> Self {
        Err(FlowError::Task(e.0))
    }
}
impl From<TaskFailed> for CallbackOutcome {
    fn from(_: TaskFailed) -> Self {
        CallbackOutcome::Rejected("The gateway failed while completing this sign-in; try again.")
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(PRUNE_EVERY, |act, _| act.watchers.retain(|_, tx| tx.receiver_count() > 0));
    }
}

impl Handler<Start> for SessionActor {
    type Result = ResponseFuture<Result<Started, FlowError>>;

    fn handle(&mut self, msg: Start, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.run(async move { sessions::start(&deps, msg.0).await })
    }
}

impl Handler<ShowLink> for SessionActor {
    type Result = ResponseFuture<Result<LinkInfo, LinkError>>;

    fn handle(&mut self, msg: ShowLink, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.run(async move { sessions::show_link(&deps, &msg.0).await })
    }
}

impl Handler<OpenLink> for SessionActor {
    type Result = ResponseFuture<Result<Url, LinkError>>;

    fn handle(&mut self, msg: OpenLink, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.run(async move { sessions::open_link(&deps, &msg.0).await })
    }
}

impl Handler<Callback> for SessionActor {
    type Result = ResponseFuture<CallbackOutcome>;

    fn handle(&mut self, msg: Callback, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        self.run(async move { sessions::callback(&deps, &msg.provider, msg.params).await })
    }
}

impl Handler<GetStatus> for SessionActor {
    type Result = ResponseFuture<Result<SessionRecord, FlowError>>;

    fn handle(&mut self, msg: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        // Subscribe before reading, so a change between the read and the wait
        // is not missed.
        let changes = self.watchers.entry(msg.id).or_insert_with(|| watch::channel(0).0).subscribe();
        let deps = self.deps.clone();
        self.run(async move { sessions::wait_status(&deps, msg.id, &msg.client, changes, msg.wait).await })
    }
}

impl Handler<Wake> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Wake, _ctx: &mut Self::Context) {
        let tick = |tx: &watch::Sender<u64>| tx.send_modify(|n| *n = n.wrapping_add(1));
        match msg.0 {
            Some(id) => {
                if let Some(tx) = self.watchers.get(&id) {
                    tick(tx);
                }
            }
            None => self.watchers.values().for_each(tick),
        }
    }
}
