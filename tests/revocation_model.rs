//! Property test of the join-versus-revocation race (ARCHITECTURE.md, "Invariants":
//! revocation drops the cache, bumps the generation, then empties the rooms; a join
//! re-checks the generation under the membership lock).
//!
//! It drives the real gateway (handlers, membership, revocation, delivery) in process:
//! socketioxide's dummy sockets instead of the network, the in-process backplane, and a
//! permission source with a cache like `authz::RedisPermissions` whose lookups answer late.
//! A proptest schedule is started all at once on a multi-thread runtime: every join, leave,
//! grant and remove-then-revoke is its own task that waits a generated number of yields
//! before it acts, and every permission lookup reads the grants, then waits a generated
//! number of yields before it answers. Joins are therefore still waiting for a permission
//! answer the grants no longer back while revocations run (counted, and required to happen).
//!
//! Once everything has settled (every task done, every join and leave answered):
//! - no socket is in a room its user is not granted any more (nothing let a stale answer
//!   in), and a publish reaches exactly the sockets in the room;
//! - a join answered `You have joined` with no leave or revocation that could undo it left
//!   its socket in the room (the check above is not passed by refusing everything).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt, join_all};
use proptest::{
    prelude::*,
    test_runner::{Config, FileFailurePersistence, TestRunner},
};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use tokio::sync::mpsc;
use wsgate::{
    auth::{Identity, TokenTable},
    authz::Authorizer,
    backplane::{Args, Broadcast, Control, memory::MemoryBackplane, wire::from_json},
    gateway::{Adapter, Gateway, IdentityLimits, Io, Overflow, deliver_broadcast, revoke},
};

const USERS: usize = 2;
const ROOMS: [&str; 2] = ["r0", "r1"];
/// Socket i belongs to user SOCKET_USER[i].
const SOCKET_USER: [usize; 3] = [0, 0, 1];
/// Yields an operation waits before it starts, or a lookup before it answers (exclusive).
const MAX_YIELDS: u8 = 24;
/// How long any one answer may take before the case fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Lookups that answered "allowed" after the grant they read was removed, over all cases:
/// the race the test exists for. The run fails if it never happened.
static STALE_ANSWERS: AtomicUsize = AtomicUsize::new(0);

/// The grants (what Redis holds) and a per-user cache of them that lookups fill, with the
/// invalidation rule of `authz::RedisPermissions`: an invalidation bumps a generation, and a
/// lookup that started before it does not refill the cache.
struct Source {
    grants: Mutex<HashSet<(usize, usize)>>,
    cache: Mutex<(u64, HashMap<usize, HashSet<usize>>)>,
    /// Yields before each lookup answers, taken in turn.
    delays: Vec<u8>,
    next: AtomicUsize,
}

impl Source {
    fn new(initial: &[bool], delays: Vec<u8>) -> Self {
        let grants = (0..USERS)
            .flat_map(|u| (0..ROOMS.len()).map(move |r| (u, r)))
            .filter(|&(u, r)| initial[u * ROOMS.len() + r])
            .collect();
        Self {
            grants: Mutex::new(grants),
            cache: Mutex::new((0, HashMap::new())),
            delays,
            next: AtomicUsize::new(0),
        }
    }

    fn set(&self, user: usize, room: usize, on: bool) {
        let mut g = self.grants.lock().unwrap();
        if on {
            g.insert((user, room));
        } else {
            g.remove(&(user, room));
        }
    }

    fn has(&self, user: usize, room: usize) -> bool {
        self.grants.lock().unwrap().contains(&(user, room))
    }

    fn rooms_of(&self, user: usize) -> HashSet<usize> {
        let g = self.grants.lock().unwrap();
        (0..ROOMS.len())
            .filter(|&r| g.contains(&(user, r)))
            .collect()
    }

    fn delay(&self) -> u8 {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.delays
            .get(i % self.delays.len().max(1))
            .copied()
            .unwrap_or(0)
    }
}

fn user_index(identity: &Identity) -> usize {
    identity.user_id.trim_start_matches('u').parse().unwrap()
}

fn room_index(project: &str) -> Option<usize> {
    ROOMS.iter().position(|r| *r == project)
}

/// The gateway's handle on the grants the test keeps changing.
struct Permissions(Arc<Source>);

impl Authorizer for Permissions {
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool> {
        async move {
            let src = &self.0;
            let user = user_index(identity);
            let cached = src.cache.lock().unwrap().1.get(&user).cloned();
            let (rooms, started) = match cached {
                Some(rooms) => (rooms, None),
                None => {
                    let started = src.cache.lock().unwrap().0;
                    (src.rooms_of(user), Some(started))
                }
            };
            // The answer is read; it reaches the gateway only after these yields.
            for _ in 0..src.delay() {
                tokio::task::yield_now().await;
            }
            if let Some(started) = started {
                let mut cache = src.cache.lock().unwrap();
                if cache.0 == started {
                    cache.1.insert(user, rooms.clone());
                }
            }
            let Some(room) = room_index(project_id) else {
                return false;
            };
            let allowed = rooms.contains(&room);
            if allowed && !src.has(user, room) {
                STALE_ANSWERS.fetch_add(1, Ordering::Relaxed);
            }
            allowed
        }
        .boxed()
    }

    fn invalidate(&self, user_id: &str) {
        let user: usize = user_id.trim_start_matches('u').parse().unwrap();
        let mut cache = self.0.cache.lock().unwrap();
        cache.0 += 1;
        cache.1.remove(&user);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// The operator grants user `.0` room `.1` (no revocation message: caches may lag).
    Grant(usize, usize),
    /// Socket `.0` sends `join_project` for room `.1`.
    Join(usize, usize),
    /// Socket `.0` sends `leave_project` for room `.1`.
    Leave(usize, usize),
    /// Remove user `.0`'s grant of room `.1`, then revoke that room (`true`) or every room
    /// the user lost (`false`), as `wsgate revoke` would have a replica do.
    RemoveAndRevoke(usize, usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SOCKET_USER.len();
    let u = 0..USERS;
    let r = 0..ROOMS.len();
    prop_oneof![
        1 => (u.clone(), r.clone()).prop_map(|(u, r)| Op::Grant(u, r)),
        4 => (s.clone(), r.clone()).prop_map(|(s, r)| Op::Join(s, r)),
        1 => (s, r.clone()).prop_map(|(s, r)| Op::Leave(s, r)),
        3 => (u, r, any::<bool>()).prop_map(|(u, r, p)| Op::RemoveAndRevoke(u, r, p)),
    ]
}

/// Everything one case starts from: the grants, the operations (each after its number of
/// yields, all at once), and the lookups' answer delays.
#[derive(Debug, Clone)]
struct Schedule {
    initial: Vec<bool>,
    ops: Vec<(u8, Op)>,
    lookup_delays: Vec<u8>,
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec(any::<bool>(), USERS * ROOMS.len()),
        prop::collection::vec((0..MAX_YIELDS, op()), 1..32),
        prop::collection::vec(0..MAX_YIELDS, 1..16),
    )
        .prop_map(|(initial, ops, lookup_delays)| Schedule {
            initial,
            ops,
            lookup_delays,
        })
}

type Packets = mpsc::Receiver<engineioxide::Packet>;
type Tx = mpsc::Sender<engineioxide::Packet>;

/// A dummy socket: its packet sender, what the server sends it, its id, its user.
struct Client {
    tx: Tx,
    rx: Packets,
    sid: socketioxide::socket::Sid,
    user: usize,
}

/// The next text packet sent to a dummy socket, within [`ANSWER_TIMEOUT`].
async fn next_text(rx: &mut Packets) -> Result<String, TestCaseError> {
    loop {
        let packet = tokio::time::timeout(ANSWER_TIMEOUT, rx.recv())
            .await
            .map_err(|_| TestCaseError::fail("timed out waiting for the server"))?
            .ok_or_else(|| TestCaseError::fail("socket closed"))?;
        if let engineioxide::Packet::Message(text) = packet {
            return Ok(text.to_string());
        }
    }
}

/// The next Socket.IO event (`2[name, ...args]`) sent to a dummy socket.
async fn next_event(rx: &mut Packets) -> Result<(String, Vec<Value>), TestCaseError> {
    loop {
        let text = next_text(rx).await?;
        let Some(body) = text.strip_prefix('2') else {
            continue;
        };
        if let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body)
            && !items.is_empty()
        {
            let name = items.remove(0).as_str().unwrap_or_default().to_owned();
            return Ok((name, items));
        }
    }
}

async fn connect(io: &Io, user: usize) -> Result<Client, TestCaseError> {
    let (tx, mut rx) = io
        .new_dummy_sock("/", json!({"token": format!("t{user}")}))
        .await;
    // The CONNECT packet, `0{"sid":...}`: the socket passed the middleware.
    let text = next_text(&mut rx).await?;
    let sid = text
        .strip_prefix('0')
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v["sid"].as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| TestCaseError::fail(format!("no CONNECT packet: {text}")))?;
    Ok(Client { tx, rx, sid, user })
}

/// What one socket was told while the schedule ran.
#[derive(Default, Debug)]
struct Answers {
    joined: Vec<usize>,
    refused: usize,
    left: usize,
    revoked: Vec<usize>,
}

impl Answers {
    fn record(&mut self, name: &str, args: &[Value]) -> Result<(), TestCaseError> {
        let first = args.first().cloned().unwrap_or(Value::Null);
        let project = |v: &Value| room_index(v["cause"]["data"]["projectId"].as_str()?);
        match (name, first["message"].as_str()) {
            ("join_project", _) => {
                let text = first.as_str().unwrap_or_default();
                let room = text
                    .strip_prefix("You have joined ")
                    .and_then(|t| room_index(t.trim_end_matches('!')))
                    .ok_or_else(|| TestCaseError::fail(format!("join answer {first}")))?;
                self.joined.push(room);
            }
            ("leave_project", _) => self.left += 1,
            ("exception", Some("Project not found")) => self.refused += 1,
            ("exception", Some("Access revoked")) => self.revoked.push(
                project(&first)
                    .ok_or_else(|| TestCaseError::fail(format!("revocation notice {first}")))?,
            ),
            _ => return Err(TestCaseError::fail(format!("unexpected {name} {args:?}"))),
        }
        Ok(())
    }
}

/// Run one operation of the schedule, after its yields.
async fn perform(io: Io, gw: Arc<Gateway>, src: Arc<Source>, tx: Vec<Tx>, wait: u8, op: Op) {
    for _ in 0..wait {
        tokio::task::yield_now().await;
    }
    match op {
        Op::Grant(u, r) => src.set(u, r, true),
        Op::Join(s, r) | Op::Leave(s, r) => {
            let event = if matches!(op, Op::Join(..)) {
                "join_project"
            } else {
                "leave_project"
            };
            let packet = format!("2[\"{event}\",{{\"projectId\":\"{}\"}}]", ROOMS[r]);
            // Fails only if the socket is gone; then its answer never comes and the case fails.
            let _ = tx[s]
                .send(engineioxide::Packet::Message(packet.into()))
                .await;
        }
        Op::RemoveAndRevoke(u, r, scoped) => {
            src.set(u, r, false);
            let control = Control::Revoke {
                user: format!("u{u}"),
                project: scoped.then(|| ROOMS[r].to_owned()),
                at_ms: None,
            };
            revoke::apply(&io, &gw, control).await;
        }
    }
}

async fn run(schedule: Schedule) -> Result<(), TestCaseError> {
    let (overflow, _reports) = Overflow::channel();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<Adapter>(overflow)
        .build_svc();
    let src = Arc::new(Source::new(&schedule.initial, schedule.lookup_delays));
    let (backplane, _inbound) = MemoryBackplane::new();
    let auth = TokenTable::new((0..USERS).map(|u| (format!("t{u}"), format!("u{u}"))));
    let gw = Gateway::with_limits(
        Arc::new(auth),
        Arc::new(Permissions(src.clone())),
        Arc::new(backplane),
        IdentityLimits::default(),
    );
    gw.attach(&io);
    let mut clients = Vec::new();
    for c in join_all(SOCKET_USER.iter().map(|&u| connect(&io, u))).await {
        clients.push(c?);
    }

    // Everything at once; each task waits its own number of yields.
    let tx: Vec<Tx> = clients.iter().map(|c| c.tx.clone()).collect();
    let tasks = schedule.ops.iter().map(|&(wait, op)| {
        tokio::spawn(perform(
            io.clone(),
            gw.clone(),
            src.clone(),
            tx.clone(),
            wait,
            op,
        ))
    });
    for done in join_all(tasks).await {
        done.map_err(|e| TestCaseError::fail(format!("operation panicked: {e}")))?;
    }

    // Settled once every join and leave is answered (each is answered exactly once).
    let mut answers: Vec<Answers> = Vec::new();
    for (s, c) in clients.iter_mut().enumerate() {
        let sent = |join: bool| {
            schedule
                .ops
                .iter()
                .filter(|(_, op)| match *op {
                    Op::Join(x, _) => join && x == s,
                    Op::Leave(x, _) => !join && x == s,
                    _ => false,
                })
                .count()
        };
        let (joins, leaves) = (sent(true), sent(false));
        let mut a = Answers::default();
        while a.joined.len() + a.refused < joins || a.left < leaves {
            let (name, args) = next_event(&mut c.rx).await?;
            a.record(&name, &args)?;
        }
        answers.push(a);
    }

    // Which rooms each socket is in now, as socketioxide's adapter says.
    let mut rooms: Vec<HashSet<usize>> = Vec::new();
    for (s, c) in clients.iter().enumerate() {
        let socket = io
            .get_socket(c.sid)
            .ok_or_else(|| TestCaseError::fail(format!("socket {s} disconnected")))?;
        rooms.push(
            socket
                .rooms()
                .iter()
                .filter_map(|r| room_index(r))
                .collect(),
        );
    }

    // A publish reaches exactly the room's sockets: one chat per room a socket is in,
    // before the answer to a `message` it sends after the publishes.
    for (r, room) in ROOMS.iter().enumerate() {
        let b = Broadcast {
            event: "chat".into(),
            args: Args(vec![from_json(&json!(r))]),
            rooms: vec![(*room).to_owned()],
            except: vec![],
            volatile: false,
            sent_at: None,
            position: None,
            order: None,
        };
        deliver_broadcast(&io, b).await;
    }
    for (s, c) in clients.iter_mut().enumerate() {
        c.tx.send(engineioxide::Packet::Message("2[\"message\"]".into()))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut chats = HashSet::new();
        loop {
            let (name, args) = next_event(&mut c.rx).await?;
            match name.as_str() {
                "message" => break,
                "chat" => {
                    let r = args.first().and_then(Value::as_u64).unwrap_or(99) as usize;
                    prop_assert!(chats.insert(r), "socket {} got chat {} twice", s, r);
                }
                _ => answers[s].record(&name, &args)?,
            }
        }
        prop_assert_eq!(&chats, &rooms[s], "socket {} got chats {:?}", s, chats);
    }

    let revokes = |u: usize, r: usize| {
        schedule.ops.iter().any(|(_, op)| {
            matches!(*op, Op::RemoveAndRevoke(x, y, scoped) if x == u && (y == r || !scoped))
        })
    };
    for (s, c) in clients.iter().enumerate() {
        // No stale admission: a member of a room is granted it now.
        for &r in &rooms[s] {
            prop_assert!(
                src.has(c.user, r),
                "socket {} (u{}) is in {} after its user lost it; answers {:?}",
                s,
                c.user,
                ROOMS[r],
                answers[s]
            );
        }
        // Not passed by refusing everything: an accepted join that nothing could undo
        // left its socket in the room.
        for &r in &answers[s].joined {
            let left = schedule.ops.iter().any(|(_, op)| *op == Op::Leave(s, r));
            if !left && !revokes(c.user, r) {
                prop_assert!(
                    rooms[s].contains(&r),
                    "socket {} joined {} but is not in it",
                    s,
                    ROOMS[r]
                );
            }
        }
        for &r in &answers[s].revoked {
            prop_assert!(
                revokes(c.user, r),
                "socket {} told {} was revoked",
                s,
                ROOMS[r]
            );
        }
    }
    Ok(())
}

#[test]
fn no_socket_stays_in_a_room_its_user_lost_whatever_the_interleaving() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 64,
        max_shrink_iters: 256,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    });
    let result = runner.run(&schedule(), |s| {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), run(s)).await })
            .map_err(|_| TestCaseError::fail("case did not settle within 10 s"))?
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let stale = STALE_ANSWERS.load(Ordering::Relaxed);
    assert!(
        stale > 0,
        "no lookup ever answered from grants a revocation had removed: the race was not produced"
    );
    eprintln!("{stale} stale permission answers reached the gateway");
}
