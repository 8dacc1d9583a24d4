// wsgate room recovery for a socket.io-client socket (browser or Node, no dependencies).
//
//   import { io } from 'socket.io-client';
//   import { withRecovery } from './recover.mjs';
//   const socket = io(URL, { auth: { token } });
//   const rooms = withRecovery(socket, {
//     onReset: (projectId, reason) => refetchProjectState(projectId),  // state may have gaps
//   });
//   rooms.on('update', (data, position) => apply(data));
//   await rooms.join('project_one');
//
// What it does:
// - join(projectId) sends `join_project {projectId, recover: true}` the first time and
//   `{projectId, since: {epoch, offset}}` on every later (re)join, with the position of
//   the last update it saw in that room;
// - on every reconnect (the client reconnects by itself after a replica's drain, crash or
//   a slow-consumer eviction: the server closes the transport) it rejoins every room it
//   joined, with `since`. After `io server disconnect` (token expired, a backend's
//   disconnectSockets) it stays offline, as the server asked;
// - each update of an opted-in room carries `{projectId, epoch, offset}` as its last
//   argument: on() strips it, tracks it, drops an update seen twice (same epoch, offset
//   not after the last one) and passes it to the handler as the last argument;
// - a live update that skips offsets (the socket missed some) makes it rejoin with the
//   last position it saw, which replays the missing ones in order;
// - onReset(projectId, reason) is called when the missed updates cannot be given back
//   (the join answer says `recovered: false`: reason `trimmed`, `epoch_changed` or
//   `unavailable`), or when a live update starts a new epoch (`epoch_changed`, Redis lost
//   its data): refetch that project's state then.

/** The `<n>` of an offset `<ms>-<n>` (a Number: exact up to 2^53 updates per room). */
export function seqOf(offset) {
  return Number(String(offset).split('-')[1]);
}

function isPosition(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    && typeof v.projectId === 'string' && typeof v.epoch === 'string' && typeof v.offset === 'string';
}

/**
 * Wrap `socket` (a socket.io-client Socket) with per-room recovery.
 * Options: onReset(projectId, reason), timeoutMs (join ack wait, default 10 s).
 */
export function withRecovery(socket, { onReset = () => {}, timeoutMs = 10000 } = {}) {
  /** projectId -> {epoch, offset} | null (joined, no position yet) */
  const rooms = new Map();
  /** Rooms with a gap-repairing rejoin under way. */
  const repairing = new Set();

  function sendJoin(projectId) {
    const at = rooms.get(projectId);
    const payload = at ? { projectId, since: { epoch: at.epoch, offset: at.offset } } : { projectId, recover: true };
    return new Promise((resolve, reject) => {
      // The callback form runs as the answer arrives, before the replayed updates behind it.
      socket.timeout(timeoutMs).emit('join_project', payload, (err, answer) => {
        if (err) return reject(err);
        if (answer && answer.status === 'ok' && rooms.has(projectId)) {
          const cur = rooms.get(projectId);
          const pos = answer.position;
          if (pos && (!cur || cur.epoch !== pos.epoch || seqOf(pos.offset) > seqOf(cur.offset))) {
            rooms.set(projectId, { epoch: pos.epoch, offset: pos.offset });
          }
          if (answer.recovered === false) onReset(projectId, answer.reason);
        }
        resolve(answer);
      });
    });
  }

  socket.on('connect', () => {
    // A (re)connection: the new session is in no room yet.
    for (const projectId of rooms.keys()) sendJoin(projectId).catch(() => {});
  });

  /** Returns [args without the position, position | null, duplicate?]. */
  function track(args) {
    const last = args[args.length - 1];
    if (!isPosition(last) || !rooms.has(last.projectId)) return [args, null, false];
    const cur = rooms.get(last.projectId);
    const pos = { epoch: last.epoch, offset: last.offset };
    if (cur && cur.epoch === last.epoch) {
      const gap = seqOf(last.offset) - seqOf(cur.offset);
      if (gap <= 0) return [args.slice(0, -1), last, true];
      if (gap > 1) {
        // Missed updates (say the socket's queue overflowed): rejoin from the last one
        // seen; they come back in order, this one included. Until then, hold back.
        if (!repairing.has(last.projectId)) {
          repairing.add(last.projectId);
          sendJoin(last.projectId).catch(() => {}).finally(() => repairing.delete(last.projectId));
        }
        return [args.slice(0, -1), last, true];
      }
    } else if (cur) {
      onReset(last.projectId, 'epoch_changed');
    }
    rooms.set(last.projectId, pos);
    return [args.slice(0, -1), last, false];
  }

  return {
    /** Join (or rejoin) a project with recovery; resolves with the join answer. */
    join(projectId) {
      if (!rooms.has(projectId)) rooms.set(projectId, null);
      // While disconnected, the `connect` handler joins.
      return socket.connected ? sendJoin(projectId) : Promise.resolve(null);
    },
    /** Leave a project and forget its position. */
    leave(projectId) {
      rooms.delete(projectId);
      return socket.timeout(timeoutMs).emitWithAck('leave_project', { projectId });
    },
    /** Listen to `event`; the handler gets the update's arguments, then its position or null. */
    on(event, handler) {
      socket.on(event, (...args) => {
        const [rest, pos, dup] = track(args);
        if (!dup) handler(...rest, pos);
      });
    },
    /** The position of the last update seen in `projectId` (what a rejoin sends as `since`). */
    position(projectId) {
      return rooms.get(projectId) ?? null;
    },
  };
}
