// chatsdk-auth operator console: a client of the documented admin API (README "Admin API").
// The admin token lives in sessionStorage (this tab only) and goes out as
// `Authorization: Bearer` on fetch; no cookie. Data is only ever written with textContent.
// The Users view's segment search and bulk actions, and the overview's users per segment
// value, are segments.js.
import { segmentActive, segmentCounts, segmentQuery, wireSegments } from './segments.js';

const TOKEN_KEY = 'chatsdk-auth.admin-token';
const PAGE = 25;

const $ = (id) => document.getElementById(id);

/** Builds an element: `el('td', {className: 'num'}, 'text', child)`. Strings become text. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'className' || k === 'textContent' || k === 'type' || k === 'value' || k === 'href' || k === 'rel' || k === 'target') {
      e[k] = v;
    } else {
      e.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  }
  return e;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** One admin API call; rejects with the API's own `{error, code}` sentence. */
async function api(method, path, body, bearer = token()) {
  const headers = { Authorization: `Bearer ${bearer || ''}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(`The server could not be reached (${e.message}).`, 'network', 0);
  }
  let data = null;
  try {
    data = await r.json();
  } catch {
    data = null;
  }
  if (!r.ok) {
    const message = data && typeof data.error === 'string' ? data.error : `The server answered HTTP ${r.status}.`;
    throw new ApiError(message, data && data.code, r.status);
  }
  return data;
}

const enc = encodeURIComponent;

function when(t) {
  if (t === null || t === undefined) return '—';
  return new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19);
}

function yes(b) {
  return b ? 'yes' : 'no';
}

function badge(text, kind) {
  return el('span', { className: `badge ${kind}` }, text);
}

function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(el('tr', {}, el('td', { className: 'empty', colspan: String(columns) }, text)));
}

/** Shows a result line under an action: ok (green) or bad (the API's sentence). */
function result(id, text, ok = true) {
  const p = $(id);
  p.textContent = text;
  p.className = `result ${ok ? 'ok' : 'bad'}`;
}

function banner(text) {
  const b = $('banner');
  b.textContent = text || '';
  b.hidden = !text;
}

/** Runs an API call for a view; a failure shows the API's sentence in the banner or `into`. */
async function guarded(fn, into) {
  try {
    banner('');
    return await fn();
  } catch (e) {
    if (e.status === 401 && e.code === 'invalid_admin_token') {
      signOut(e.message);
      return undefined;
    }
    if (into) result(into, e.message, false);
    else banner(e.message);
    return undefined;
  }
}

// ---------------------------------------------------------------- confirmation dialog

/**
 * Asks for confirmation. `typed`: the text the operator must type to enable the button.
 * Resolves true when confirmed.
 */
function confirmAction({ title, body, warning, typed, ok }) {
  const d = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-body').textContent = body;
  $('confirm-warning').textContent = warning || '';
  $('confirm-warning').hidden = !warning;
  $('confirm-ok').textContent = ok;
  const input = $('confirm-typed');
  input.value = '';
  $('confirm-typed-wrap').hidden = !typed;
  if (typed) {
    $('confirm-typed-label').textContent = `Type ${typed} to confirm`;
    input.setAttribute('placeholder', typed);
  }
  const okButton = $('confirm-ok');
  okButton.disabled = Boolean(typed);
  return new Promise((resolve) => {
    const onInput = () => { okButton.disabled = input.value !== typed; };
    const finish = (v) => {
      input.removeEventListener('input', onInput);
      $('confirm-form').onsubmit = null;
      $('confirm-cancel').onclick = null;
      d.onclose = null;
      if (d.open) d.close();
      resolve(v);
    };
    input.addEventListener('input', onInput);
    $('confirm-form').onsubmit = (ev) => {
      ev.preventDefault();
      if (typed && input.value !== typed) return;
      finish(true);
    };
    $('confirm-cancel').onclick = () => finish(false);
    d.onclose = () => finish(false);
    d.showModal();
    (typed ? input : $('confirm-cancel')).focus();
  });
}

// ---------------------------------------------------------------- sign-in

async function signIn(ev) {
  ev.preventDefault();
  const candidate = $('signin-token').value.trim();
  const err = $('signin-error');
  err.hidden = true;
  $('signin-submit').disabled = true;
  try {
    await api('GET', '/admin/overview', undefined, candidate);
    sessionStorage.setItem(TOKEN_KEY, candidate);
    $('signin-token').value = '';
    showApp();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    $('signin-submit').disabled = false;
  }
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  // A fresh page: nothing rendered from the API survives.
  if (why) sessionStorage.setItem('chatsdk-auth.signed-out-because', why);
  location.replace('/admin/');
}

function showSignIn() {
  $('nav').hidden = true;
  $('signout').hidden = true;
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  $('view-signin').hidden = false;
  const why = sessionStorage.getItem('chatsdk-auth.signed-out-because');
  if (why) {
    sessionStorage.removeItem('chatsdk-auth.signed-out-because');
    $('signin-error').textContent = why;
    $('signin-error').hidden = false;
  }
  $('signin-token').focus();
}

// The application (app.id) in the header, on every view.
async function loadAppId() {
  const o = await guarded(() => api('GET', '/admin/overview'));
  if (!o) return;
  $('app-id').textContent = o.app_id;
  $('app-id').hidden = false;
}

function showApp() {
  $('view-signin').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  loadAppId();
  if (!location.hash || location.hash === '#') location.hash = '#overview';
  else route();
}

// ---------------------------------------------------------------- views

const VIEWS = {
  overview: loadOverview,
  users: loadUsers,
  'api-keys': loadApiKeys,
  'signing-keys': loadSigningKeys,
  audit: loadAudit,
};

function route() {
  if (!token()) {
    showSignIn();
    return;
  }
  const name = location.hash.replace(/^#/, '');
  const view = VIEWS[name] ? name : 'overview';
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== `view-${view}`;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  banner('');
  VIEWS[view]();
}

function keyRows(tbody, keys) {
  if (!keys.length) {
    emptyRow(tbody, 7, 'No keys.');
    return;
  }
  const states = { current: 'ok', next: 'warn', previous: 'plain', expired: 'off' };
  tbody.replaceChildren(...keys.map((k) => el('tr', {},
    el('td', {}, k.kind === 'ws' ? 'wsToken' : 'REST'),
    el('td', { className: 'mono' }, k.kid),
    el('td', {}, k.alg),
    el('td', {}, badge(k.state, states[k.state] || 'plain')),
    el('td', {}, k.signs_from ? when(k.signs_from) : 'from the start'),
    el('td', {}, when(k.signs_until)),
    el('td', {}, when(k.expires_at)))));
}

// Overview

async function loadOverview() {
  const o = await guarded(() => api('GET', '/admin/overview'));
  if (!o) return;
  const statusOk = o.status === 'ready';
  const stat = (label, value, cls = '') => el('div', { className: 'stat' },
    el('div', { className: 'label' }, label),
    el('div', { className: `value ${cls}` }, value));
  const r = o.recent;
  const minted = r.minted_rest + r.minted_ws + r.minted_subscription;
  const refused = r.rejected.reduce((n, x) => n + x.count, 0);
  $('overview-stats').replaceChildren(
    stat('Readiness', o.status.replace('_', ' '), statusOk ? 'ok' : 'bad'),
    stat('Store', o.store_backend === 'postgres' ? 'PostgreSQL' : 'SQLite'),
    stat('Active revocation', o.revocation_active ? 'on' : 'off', o.revocation_active ? 'ok' : ''),
    stat('Kicks pending', String(o.kicks_pending), o.kicks_pending > 0 ? 'bad' : ''),
    stat('Minted, 5 min', String(minted)),
    stat('Refused, 5 min', String(refused), refused > 0 ? 'bad' : ''),
  );
  $('overview-window').textContent =
    `${r.seconds < 300 ? `Since this process started ${r.seconds} s ago` : 'The last 300 s'} on this replica: ` +
    `${r.minted_rest} REST, ${r.minted_ws} wsToken, ${r.minted_subscription} subscription tokens. Version ${o.version}.`;
  const max = Math.max(1, ...r.minted_per_minute, ...r.rejected_per_minute);
  const bar = (v) => el('div', { className: 'bar' },
    el('meter', { min: '0', max: String(max), value: String(v) }), el('span', {}, String(v)));
  $('overview-minutes').replaceChildren(...r.minted_per_minute.map((m, i) => el('tr', {},
    el('td', { className: 'nowrap' }, i === 4 ? 'last minute' : `${5 - i} min ago`),
    el('td', {}, bar(m)),
    el('td', {}, bar(r.rejected_per_minute[i])))));
  if (r.rejected.length) {
    $('overview-reasons').replaceChildren(...r.rejected.map((x) => el('tr', {},
      el('td', { className: 'mono' }, x.reason), el('td', { className: 'num' }, String(x.count)))));
  } else {
    emptyRow($('overview-reasons'), 2, 'No refusals.');
  }
  keyRows($('overview-keys'), o.keys);
  segmentCounts(o.segments, { $, el });
}

async function revokeAll() {
  const ok = await confirmAction({
    title: 'Revoke every token?',
    body: 'Every REST token and wsToken of every user issued until now stops working. All clients must mint again.',
    typed: 'REVOKE ALL',
    ok: 'Revoke all tokens',
  });
  if (!ok) return;
  const r = await guarded(() => api('POST', '/admin/revoke-tokens', {}), 'revoke-all-result');
  if (r) result('revoke-all-result', `Revoked every token issued at or before ${when(r.revoked_before)} UTC.`);
}

// Users

const users = { after: null, next: null, current: null };

async function loadUsers() {
  const q = `/admin/users?limit=${PAGE}${users.after ? `&after=${enc(users.after)}` : ''}${segmentQuery()}`;
  const page = await guarded(() => api('GET', q));
  if (!page) return;
  users.next = page.next_after;
  $('users-next').disabled = !page.next_after;
  $('users-first').disabled = !users.after;
  const tbody = $('users-rows');
  if (!page.users.length) {
    emptyRow(tbody, 5, segmentActive() ? 'No user matches this segment.' : 'No users yet: they appear with their first POST /tokens.');
    return;
  }
  tbody.replaceChildren(...page.users.map((u) => {
    const open = el('button', { type: 'button', className: 'link mono' }, u.id);
    open.addEventListener('click', () => showUser(u.id));
    return el('tr', {},
      el('td', {}, open),
      el('td', {}, u.name || '—'),
      el('td', {}, u.disabled ? badge('disabled', 'off') : badge('active', 'ok')),
      el('td', {}, u.tokens_valid_after ? when(u.tokens_valid_after) : '—'),
      el('td', {}, when(u.updated_at)));
  }));
}

async function showUser(id) {
  const u = await guarded(() => api('GET', `/admin/users/${enc(id)}`));
  if (!u) return;
  renderUser(u);
  result('user-result', '');
  $('user-detail').scrollIntoView({ block: 'nearest' });
}

function renderUser(u) {
  users.current = u;
  $('user-detail').hidden = false;
  $('user-detail-id').textContent = u.id;
  const status = $('user-detail-status');
  status.textContent = u.disabled ? 'disabled' : 'active';
  status.className = `badge ${u.disabled ? 'off' : 'ok'}`;
  $('user-detail-name').textContent = u.name || '—';
  const image = $('user-detail-image');
  // The URL only, never loaded: the console makes no request outside this origin.
  if (u.image && /^https?:\/\//i.test(u.image)) {
    image.replaceChildren(el('a', { href: u.image, rel: 'noopener noreferrer', target: '_blank', className: 'mono' }, u.image));
  } else {
    image.textContent = u.image || '—';
  }
  $('user-detail-tva').textContent = u.tokens_valid_after ? `${when(u.tokens_valid_after)} UTC` : '— (never revoked)';
  $('user-detail-created').textContent = `${when(u.created_at)} UTC`;
  $('user-detail-updated').textContent = `${when(u.updated_at)} UTC`;
  $('user-detail-custom').textContent = u.custom === null || u.custom === undefined ? '—' : JSON.stringify(u.custom, null, 2);
  $('user-disable').hidden = u.disabled;
  $('user-enable').hidden = !u.disabled;
}

async function userAction(kind) {
  const u = users.current;
  if (!u) return;
  const id = u.id;
  const plans = {
    disable: {
      title: `Disable user “${id}”?`,
      body: `${id} can no longer mint tokens, and every token they hold is refused from now on. Enable them again at any time.`,
      ok: 'Disable', method: 'POST', path: `/admin/users/${enc(id)}/disable`, body: {}, done: 'Disabled',
    },
    enable: {
      title: `Enable user “${id}”?`,
      body: `${id} can mint tokens again. Tokens revoked before remain revoked.`,
      ok: 'Enable', method: 'POST', path: `/admin/users/${enc(id)}/enable`, body: {}, done: 'Enabled',
    },
    revoke: {
      title: `Revoke every token of “${id}”?`,
      body: `Every token ${id} was issued until now stops working; the client must mint again.`,
      ok: 'Revoke tokens', method: 'POST', path: `/admin/users/${enc(id)}/revoke-tokens`, body: {}, done: 'Revoked the tokens of',
    },
    delete: {
      title: `Delete user “${id}”?`,
      body: `${id}'s profile is deleted and their tokens stop working. A later POST /tokens creates them anew.`,
      typed: id, ok: 'Delete', method: 'DELETE', path: `/admin/users/${enc(id)}`, done: 'Deleted',
    },
  };
  const p = plans[kind];
  if (!await confirmAction(p)) return;
  const r = await guarded(() => api(p.method, p.path, p.body), 'user-result');
  if (!r) return;
  if (r.user) renderUser(r.user);
  else $('user-detail').hidden = true;
  const kick = r.kick_queued ? 'Kick queued: yes (Centrifugo disconnects them now).' : 'Kick queued: no.';
  result('user-result', `${p.done} ${id}. ${kick}`);
  loadUsers();
}

// API keys

async function loadApiKeys() {
  const r = await guarded(() => api('GET', '/admin/api-keys'));
  if (!r) return;
  const tbody = $('api-keys-rows');
  if (!r.api_keys.length) {
    emptyRow(tbody, 6, 'No API keys.');
    return;
  }
  tbody.replaceChildren(...r.api_keys.map((k) => {
    let action = '';
    if (!k.revoked_at) {
      action = el('button', { type: 'button', className: 'danger' }, 'Revoke…');
      action.setAttribute('aria-label', `Revoke API key ${k.name}`);
      action.addEventListener('click', () => revokeApiKey(k.name));
    }
    return el('tr', {},
      el('td', { className: 'mono' }, k.name),
      el('td', { className: 'mono' }, k.prefix),
      el('td', {}, when(k.created_at)),
      el('td', {}, k.last_used_at ? when(k.last_used_at) : 'never'),
      el('td', {}, k.revoked_at ? badge(`revoked ${when(k.revoked_at)}`, 'off') : badge('active', 'ok')),
      el('td', { className: 'num' }, action));
  }));
}

async function createApiKey(ev) {
  ev.preventDefault();
  const name = $('api-key-name').value.trim();
  const r = await guarded(() => api('POST', '/admin/api-keys', { name }), 'api-key-result');
  if (!r) return;
  $('api-key-name').value = '';
  $('new-key-name').textContent = r.name;
  $('new-key-value').textContent = r.key;
  $('new-key-copied').textContent = '';
  $('new-key').hidden = false;
  result('api-key-result', `Created API key ${r.name}.`);
  $('new-key-copy').focus();
  loadApiKeys();
}

async function copyKey() {
  const key = $('new-key-value').textContent;
  try {
    await navigator.clipboard.writeText(key);
    result('new-key-copied', 'Copied to the clipboard.');
  } catch {
    // No clipboard permission: select it so Ctrl+C works.
    const range = document.createRange();
    range.selectNodeContents($('new-key-value'));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    result('new-key-copied', 'The browser refused the clipboard: the key is selected, press Ctrl+C.', false);
  }
}

function forgetNewKey() {
  $('new-key-value').textContent = '';
  $('new-key').hidden = true;
}

async function revokeApiKey(name) {
  const ok = await confirmAction({
    title: `Revoke API key “${name}”?`,
    body: `Backends using ${name} are refused from now on (401). Tokens already minted stay valid.`,
    ok: 'Revoke key',
  });
  if (!ok) return;
  const r = await guarded(() => api('DELETE', `/admin/api-keys/${enc(name)}`), 'api-key-result');
  if (!r) return;
  result('api-key-result', `Revoked API key ${name}.`);
  loadApiKeys();
}

// Signing keys

let signingKeys = [];

async function loadSigningKeys() {
  const r = await guarded(() => api('GET', '/admin/keys'));
  if (!r) return;
  signingKeys = r.keys;
  keyRows($('signing-keys-rows'), r.keys);
}

async function rotate(kind) {
  const current = signingKeys.find((k) => k.kind === kind && k.state === 'current');
  const hmac = current && current.alg.startsWith('HS');
  const label = kind === 'ws' ? 'wsToken' : 'REST';
  let warning = '';
  let body = `A new ${label} key is made${current ? ` to replace ${current.kid} (${current.alg})` : ''}. ` +
    'The old key keeps verifying until its last token expires.';
  if (kind === 'ws' && hmac) {
    warning = 'This wsToken key is HMAC: Centrifugo must be reloaded. Right after rotating, run ' +
      '`chatsdk-auth centrifugo-config > config.json` and reload Centrifugo (≥ 6.6.1); until then ' +
      'it refuses wsTokens signed with the new key. A second ws rotation is refused while the previous key still verifies.';
  } else if (kind === 'ws') {
    body += ' Centrifugo finds the new key in the JWKS by its kid: nothing to reload.';
  } else {
    body += ' Gateways using /verify and JWKS clients follow by themselves.';
  }
  const ok = await confirmAction({ title: `Rotate the ${label} signing key?`, body, warning, ok: 'Rotate' });
  if (!ok) return;
  const r = await guarded(() => api('POST', `/admin/keys/${kind}/rotate`, {}), 'rotate-result');
  if (!r) return;
  result('rotate-result', `Rotated the ${label} key: new kid ${r.new_kid} (${r.alg}), signing from ${when(r.signs_from)} UTC; old kid ${r.old_kid}.`);
  loadSigningKeys();
}

// Audit trail

const audit = { before: null, next: null };

async function loadAudit() {
  const params = new URLSearchParams({ limit: String(PAGE) });
  for (const [k, id] of [['action', 'audit-action'], ['actor', 'audit-actor'], ['subject', 'audit-subject']]) {
    const v = $(id).value.trim();
    if (v) params.set(k, v);
  }
  if (audit.before) params.set('before', String(audit.before));
  const r = await guarded(() => api('GET', `/admin/audit?${params}`));
  if (!r) return;
  audit.next = r.next_before;
  $('audit-older').disabled = !r.next_before;
  $('audit-newest').disabled = !audit.before;
  const tbody = $('audit-rows');
  if (!r.events.length) {
    emptyRow(tbody, 6, 'No events match.');
    return;
  }
  tbody.replaceChildren(...r.events.map((e) => el('tr', {},
    el('td', { className: 'nowrap' }, when(e.at)),
    el('td', {}, badge(e.event, e.event.startsWith('rate_limit') ? 'warn' : 'plain')),
    el('td', {}, e.actor),
    el('td', { className: 'mono' }, e.target_kind ? `${e.target_kind}:${e.target ?? ''}` : '—'),
    el('td', { className: 'mono' }, e.source || '—'),
    el('td', {}, e.detail || ''))));
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('signin-form').addEventListener('submit', signIn);
  // Disabled in the page until now: Enter before this script ran submits nothing.
  $('signin-submit').disabled = false;
  $('signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', route);
  $('overview-refresh').addEventListener('click', loadOverview);
  $('revoke-all').addEventListener('click', revokeAll);

  $('user-lookup').addEventListener('submit', (ev) => {
    ev.preventDefault();
    showUser($('user-lookup-id').value.trim());
  });
  $('users-next').addEventListener('click', () => { users.after = users.next; loadUsers(); });
  $('users-first').addEventListener('click', () => { users.after = null; loadUsers(); });
  $('user-disable').addEventListener('click', () => userAction('disable'));
  $('user-enable').addEventListener('click', () => userAction('enable'));
  $('user-revoke').addEventListener('click', () => userAction('revoke'));
  $('user-delete').addEventListener('click', () => userAction('delete'));
  wireSegments({
    $, api, guarded, confirmAction, result, reload: () => { users.after = null; loadUsers(); },
  });

  $('api-key-create').addEventListener('submit', createApiKey);
  $('new-key-copy').addEventListener('click', copyKey);
  $('new-key-done').addEventListener('click', forgetNewKey);

  $('rotate-rest').addEventListener('click', () => rotate('rest'));
  $('rotate-ws').addEventListener('click', () => rotate('ws'));

  $('audit-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    audit.before = null;
    loadAudit();
  });
  $('audit-clear').addEventListener('click', () => {
    $('audit-filter').reset();
    audit.before = null;
    loadAudit();
  });
  $('audit-older').addEventListener('click', () => { audit.before = audit.next; loadAudit(); });
  $('audit-newest').addEventListener('click', () => { audit.before = null; loadAudit(); });

  route();
}

wire();
