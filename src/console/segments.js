// The overview's users per value of each declared segment field (segmentCounts), and
// the Users view's segment (README "Segments: query and bulk actions by `custom`"): search the
// users of a `where`, dry-run a bulk action on them, then run it on exactly the count the dry
// run showed (POST /admin/bulk/{action} with `expected_count`: a segment that changed in
// between is refused with 409 and nothing changes). Imported by console.js, which hands it its
// helpers; data is only ever written with textContent.

const ACTIONS = {
  'revoke-tokens': {
    verb: 'Revoke the tokens of',
    done: 'Revoked the tokens of',
    body: (n) => `Every token the ${n} users were issued until now stops working; their live connections are disconnected and their clients must mint again.`,
  },
  disable: {
    verb: 'Disable',
    done: 'Disabled',
    body: (n) => `The ${n} users can no longer mint tokens, every token they hold is refused and their live connections are disconnected. Enable them again at any time.`,
  },
  enable: {
    verb: 'Enable',
    done: 'Enabled',
    body: (n) => `The ${n} users can mint tokens again. Tokens revoked before remain revoked.`,
  },
  delete: {
    verb: 'Delete',
    done: 'Deleted',
    body: (n) => `The profiles of the ${n} users are deleted, their tokens stop working and their live connections are disconnected. A later POST /tokens creates a user anew.`,
  },
};

/** `tenantId=tenant-789 AND plan=7` → its conditions. */
function conditions(text) {
  return text.split(/\s+AND\s+/).map((c) => c.trim()).filter(Boolean);
}

const state = { where: [], dry: null };

/** The `where` parameters of the segment searched (empty when none), for GET /admin/users. */
export function segmentQuery() {
  return state.where.map((c) => `&where=${encodeURIComponent(c)}`).join('');
}

/** Whether the Users list shows a segment. */
export function segmentActive() {
  return state.where.length > 0;
}

/** Wires the segment card; `reload` lists the first page of users again. */
export function wireSegments({ $, api, guarded, confirmAction, result, reload }) {
  const run = $('segment-run');

  const forget = () => {
    state.dry = null;
    run.hidden = true;
  };

  const search = () => {
    state.where = conditions($('segment-where').value);
    forget();
    result('segment-result', '');
    $('users-segment').textContent = state.where.length ? `Segment: ${state.where.join(' AND ')}` : '';
    reload();
  };

  const dryRun = async () => {
    search();
    if (!state.where.length) {
      result('segment-result', 'Type a segment first, for example tenantId=tenant-789.', false);
      return;
    }
    const action = $('segment-action').value;
    const r = await guarded(() => api('POST', `/admin/bulk/${action}`, { where: state.where, dry_run: true }), 'segment-result');
    if (!r) return;
    const a = ACTIONS[action];
    if (r.count === 0) {
      result('segment-result', `Dry run: no user matches ${r.where}; nothing to do.`);
      return;
    }
    state.dry = { action, where: state.where, count: r.count, before: r.revoked_before, canonical: r.where };
    result('segment-result', `Dry run: ${r.count} users match ${r.where}. Nothing was changed.`);
    run.textContent = `${a.verb} ${r.count} users…`;
    run.hidden = false;
  };

  const act = async () => {
    const d = state.dry;
    if (!d) return;
    const a = ACTIONS[d.action];
    const ok = await confirmAction({
      title: `${a.verb} the ${d.count} users of ${d.canonical}?`,
      body: `${a.body(d.count)} The action is refused, changing nothing, if the segment no longer holds ${d.count} users.`,
      typed: String(d.count),
      ok: `${a.verb} ${d.count} users`,
    });
    if (!ok) return;
    const body = { where: d.where, expected_count: d.count };
    if (d.before !== undefined) body.before = d.before;
    forget();
    const r = await guarded(() => api('POST', `/admin/bulk/${d.action}`, body), 'segment-result');
    if (!r) return;
    result('segment-result', `${a.done} ${r.changed} of ${r.count} users of ${r.where}. Kicks queued: ${r.kicks_queued}.`);
    reload();
  };

  $('segment-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    search();
  });
  $('segment-clear').addEventListener('click', () => {
    $('segment-where').value = '';
    search();
  });
  $('segment-where').addEventListener('input', forget);
  $('segment-action').addEventListener('change', forget);
  $('segment-dry-run').addEventListener('click', dryRun);
  run.addEventListener('click', act);
}

/** The overview's segment card: per declared field, its most common values and the others. */
export function segmentCounts(s, { $, el }) {
  const box = $('overview-segments');
  const note = $('overview-segments-note');
  box.replaceChildren();
  if (!s) {
    note.textContent = 'The store did not answer: no segment counts.';
    return;
  }
  if (!s.fields.length) {
    note.textContent = 'No segment field is declared: list the custom fields to count by in segments.fields.';
    return;
  }
  note.textContent = `Users per value of each declared field: the ${s.k} most common values, then the others. ` +
    'A user whose array holds several values counts under each.' +
    (s.pending_changes ? ' The latest changes are still being counted.' : '');
  box.append(...s.fields.map((f) => {
    const max = Math.max(1, ...f.top.map((v) => v.users), f.other);
    const row = (label, n, cls) => el('tr', {},
      el('th', { scope: 'row', className: cls }, label),
      el('td', {}, el('div', { className: 'bar' },
        el('meter', { min: '0', max: String(max), value: String(n) }), el('span', {}, String(n)))));
    // JSON text, so the string "7" and the number 7 read apart.
    const rows = f.top.map((v) => row(JSON.stringify(v.value), v.users, 'mono'));
    if (f.other > 0) rows.push(row('other values', f.other, 'muted'));
    if (!rows.length) rows.push(el('tr', {}, el('td', { className: 'empty', colspan: '2' }, 'No user has this field.')));
    return el('table', { className: 'data compact', 'data-field': f.field },
      el('caption', {}, `${f.field}: ${f.total} counted`),
      el('tbody', {}, ...rows));
  }));
}
