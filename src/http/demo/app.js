// The wsgate demo page: one socket.io-client socket, driven by the controls on the page.
// Everything the gateway sends is shown in the event log; text is always set with
// textContent, never parsed as HTML.
//
// `?gateway=http://host:port` connects to another gateway than the one serving the page
// (a cross-origin connection: that gateway's --allowed-origins must list this page's origin);
// `&credentials` adds `withCredentials` (that gateway needs --cors-credentials).
'use strict';

(function () {
  const PROJECTS = ['project_one', 'project_two', 'project_three'];
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const target = params.get('gateway') || location.origin;
  const withCredentials = params.has('credentials');

  let socket = null;
  const joined = new Set();
  const counts = { chat: 0, exception: 0 };

  function now() {
    return new Date().toISOString().slice(11, 23);
  }

  function render(arg) {
    return typeof arg === 'string' ? arg : JSON.stringify(arg);
  }

  function log(event, text, detail) {
    const li = document.createElement('li');
    li.dataset.event = event;
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = now();
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = event;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    if (detail) {
      const d = document.createElement('span');
      d.className = 'detail';
      d.textContent = detail;
      body.appendChild(d);
    }
    li.append(time, kind, body);
    $('log').prepend(li);
    if (event in counts) {
      counts[event] += 1;
      $('counts').textContent = `${counts.chat} chat · ${counts.exception} exception`;
    }
  }

  function setState(state, text) {
    const el = $('state');
    el.dataset.state = state;
    el.textContent = text || state;
    const live = state === 'connected';
    $('connect').disabled = socket !== null;
    $('disconnect').disabled = socket === null;
    $('hello').disabled = !live;
    $('custom-join').disabled = !live;
    for (const b of document.querySelectorAll('#projects button')) b.disabled = !live;
  }

  function setTransport(name, history) {
    const el = $('transport');
    el.dataset.transport = name;
    el.textContent = history.join(' → ') || 'none';
  }

  function renderProjects() {
    const table = $('projects');
    table.replaceChildren();
    for (const p of PROJECTS) {
      const tr = document.createElement('tr');
      tr.dataset.project = p;
      const name = document.createElement('td');
      name.className = 'name';
      name.textContent = p;
      const member = document.createElement('td');
      member.className = 'member';
      member.textContent = joined.has(p) ? 'joined' : '';
      const actions = document.createElement('td');
      actions.className = 'actions';
      const join = document.createElement('button');
      join.textContent = 'Join';
      join.dataset.action = 'join';
      join.onclick = () => joinProject(p);
      const leave = document.createElement('button');
      leave.textContent = 'Leave';
      leave.className = 'secondary';
      leave.dataset.action = 'leave';
      leave.onclick = () => leaveProject(p);
      actions.append(join, ' ', leave);
      tr.append(name, member, actions);
      table.appendChild(tr);
    }
    setState($('state').dataset.state, $('state').textContent);
  }

  async function joinProject(projectId) {
    if (!socket) return;
    try {
      const answer = await socket.timeout(5000).emitWithAck('join_project', { projectId });
      if (typeof answer === 'string') joined.add(projectId);
    } catch (e) {
      log('error', `join_project ${projectId}: ${e.message}`);
    }
    renderProjects();
  }

  async function leaveProject(projectId) {
    if (!socket) return;
    try {
      await socket.timeout(5000).emitWithAck('leave_project', { projectId });
      joined.delete(projectId);
    } catch (e) {
      log('error', `leave_project ${projectId}: ${e.message}`);
    }
    renderProjects();
  }

  function connect() {
    if (socket) return;
    const token = $('token').value;
    const transports = $('transports').value.split(',');
    const history = [];
    setTransport('', history);
    const s = io(target, { auth: { token }, transports, withCredentials, forceNew: true });
    socket = s;
    setState('connecting', `connecting (${token})`);

    // The Engine.IO connection opens (and may upgrade) before the Socket.IO `connect`.
    s.io.on('open', () => {
      const engine = s.io.engine;
      history.length = 0;
      history.push(engine.transport.name);
      setTransport(engine.transport.name, history);
      engine.on('upgrade', (t) => {
        history.push(t.name);
        setTransport(t.name, history);
        log('transport', `upgraded to ${t.name}`);
      });
    });
    s.on('connect', () => {
      setState('connected', `connected as ${token}`);
      log('state', `connected (socket id ${s.id}, transport ${s.io.engine.transport.name})`);
    });
    s.on('connect_error', (err) => {
      // Refused by the gateway (e.g. Unauthorized): the client does not retry, so let the
      // user pick another token. A network error (e.g. origin refused) is retried.
      const retrying = s.active;
      if (!retrying && socket === s) socket = null;
      setState('error', `connect_error: ${err.message}`);
      log('connect_error', err.message, retrying ? 'retrying' : 'not retrying');
    });
    s.on('disconnect', (reason) => {
      joined.clear();
      renderProjects();
      setTransport('', []);
      if (socket === s) {
        if (!s.active) socket = null;
        setState(s.active ? 'connecting' : 'disconnected', `disconnected: ${reason}`);
      }
      log('state', `disconnected: ${reason}`);
    });
    s.on('exception', (err) => {
      const message = (err && err.message) || 'exception';
      log('exception', message, JSON.stringify(err));
    });
    s.onAny((event, ...args) => {
      if (event === 'exception') return;
      log(event, args.map(render).join(' '));
    });
  }

  function disconnect() {
    if (!socket) return;
    const s = socket;
    socket = null;
    s.close();
    joined.clear();
    renderProjects();
    setTransport('', []);
    setState('disconnected');
  }

  $('target').textContent = target;
  $('connect').onclick = connect;
  $('disconnect').onclick = disconnect;
  $('hello').onclick = () => socket && socket.emit('message', 'hello from the demo page');
  $('custom-join').onclick = () => joinProject($('custom-project').value);
  renderProjects();
  setState('disconnected');
})();
