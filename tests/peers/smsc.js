// A minimal SMSC on node-smpp (written by others, not us): the interop peer for
// Ujumbe's SmppConnector. Usage: node smsc.js [port] [latencyMs] [receiptDelayMs]
// (or env SMSC_PORT, SMSC_LATENCY_MS, SMSC_RECEIPT_DELAY_MS, SMSC_SYSTEM_ID, SMSC_PASSWORD).
// Prints "listening <port>" once ready; port 0 picks a free one.
//
// Like a real SMSC it stores receipts it could not hand over (no receiver bind,
// or the bind dropped before deliver_sm_resp) and sends them after the next bind.
// Optional, for end-to-end tests:
//   SMSC_STATE_FILE=path  journal accepted messages and acknowledged receipts, so a
//                         restart after SIGKILL still sends every pending receipt
//                         and never reuses a message id
//   SMSC_LOG=1            print one JSON line per submit_sm ({"event": "submit", ...})
//   SMSC_CONTROL=1        read JSON commands on stdin, one a line:
//                         {"mo": {"source_addr": "2547...", "destination_addr": "22141", "short_message": "hi"}}
//                         sends a mobile-originated deliver_sm on a receiver bind; prints
//                         {"event": "mo", "ok": true|false, "short_message": ...} when answered
//                         {"release_receipts": true}
//                         sends the receipts SMSC_HOLD_RECEIPTS held back, and later ones as usual
//   SMSC_HOLD_RECEIPTS=1  hold every receipt (journaled, not sent) until release_receipts: a
//                         test can kill its ESME knowing no receipt was answered before
const fs = require('fs');
const smpp = require('smpp');
const env = process.env;
const port = Number(process.argv[2] || env.SMSC_PORT || 2775);
const latency = Number(process.argv[3] || env.SMSC_LATENCY_MS || 0);
const receiptDelay = Number(process.argv[4] || env.SMSC_RECEIPT_DELAY_MS || 100);
const systemId = env.SMSC_SYSTEM_ID || 'ujumbe';
const password = env.SMSC_PASSWORD || 'secret';
const stateFile = env.SMSC_STATE_FILE || '';
const logSubmits = env.SMSC_LOG === '1';
let holding = env.SMSC_HOLD_RECEIPTS === '1';
const held = []; // receipts due while holding
let nextId = 0x5a000000;
const stamp = () => new Date().toISOString().replace(/[-T:]/g, '').slice(2, 12);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Receipts not yet acknowledged: id -> {id, src, dst, submitted}
const pending = new Map();
const waiting = []; // receipts due, waiting for a receiver bind
const receivers = new Set(); // bound sessions that can take deliver_sm

if (stateFile && fs.existsSync(stateFile)) {
  for (const line of fs.readFileSync(stateFile, 'utf8').split('\n')) {
    if (!line) continue;
    const [op, id, src, dst, submitted] = line.split(' ');
    if (op === 'S') {
      pending.set(id, { id, src, dst, submitted });
      nextId = Math.max(nextId, parseInt(id, 16) + 1);
    } else if (op === 'D') {
      pending.delete(id);
    }
  }
  for (const r of pending.values()) waiting.push(r);
}
const journal = (line) => { if (stateFile) fs.appendFileSync(stateFile, line + '\n'); };

function sendReceipt(session, r) {
  session.outstanding.add(r);
  const sent = session.deliver_sm({
    source_addr: r.src,
    destination_addr: r.dst,
    esm_class: 4,
    short_message: `id:${r.id} sub:001 dlvrd:001 submit date:${r.submitted} done date:${stamp()} stat:DELIVRD err:000 text:`,
  }, (resp) => {
    session.outstanding.delete(r);
    if (resp.command_status === 0) {
      pending.delete(r.id);
      journal(`D ${r.id}`);
    } else {
      waiting.push(r);
    }
  });
  if (!sent) { session.outstanding.delete(r); waiting.push(r); }
}

function deliver(r, preferred) {
  if (holding) return held.push(r);
  if (preferred && receivers.has(preferred)) return sendReceipt(preferred, r);
  const any = receivers.values().next().value;
  if (any) return sendReceipt(any, r);
  waiting.push(r);
}

function flush() {
  while (waiting.length && receivers.size) deliver(waiting.shift());
}

const server = smpp.createServer((session) => {
  let bound = false;
  session.outstanding = new Set();
  const bind = (rx) => (pdu) => {
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      return;
    }
    bound = true;
    session.send(pdu.response({ system_id: 'node-smsc' }));
    if (rx) {
      receivers.add(session);
      setImmediate(flush);
    }
  };
  session.on('bind_transceiver', bind(true));
  session.on('bind_receiver', bind(true));
  session.on('bind_transmitter', bind(false));
  session.on('submit_sm', (pdu) => {
    if (!bound) return session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
    const id = (nextId++).toString(16);
    const r = { id, src: pdu.destination_addr, dst: pdu.source_addr, submitted: stamp() };
    if (pdu.registered_delivery & 1) {
      pending.set(id, r);
      journal(`S ${id} ${r.src} ${r.dst} ${r.submitted}`);
    }
    if (logSubmits) {
      const sm = pdu.short_message || {};
      const udh = sm.udh ? sm.udh.map((b) => Buffer.from(b).toString('hex')) : null;
      out({ event: 'submit', id, source_addr: pdu.source_addr, destination_addr: pdu.destination_addr,
            esm_class: pdu.esm_class, udh, message: typeof sm === 'string' ? sm : (sm.message === undefined ? '' : String(sm.message)) });
    }
    setTimeout(() => session.send(pdu.response({ message_id: id })), latency);
    if (pdu.registered_delivery & 1) setTimeout(() => deliver(r, session), latency + receiptDelay);
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('close', () => {
    receivers.delete(session);
    // deliver_sm sent but never acknowledged: the ESME may not have it, send again later
    for (const r of session.outstanding) waiting.push(r);
    session.outstanding.clear();
    flush();
  });
  session.on('error', () => {});
});

if (env.SMSC_CONTROL === '1') {
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const cmd = JSON.parse(line);
      if (cmd.release_receipts) {
        holding = false;
        while (held.length) deliver(held.shift());
      }
      if (cmd.mo) {
        const s = receivers.values().next().value;
        if (!s) { out({ event: 'mo', ok: false, reason: 'no receiver bind' }); continue; }
        s.deliver_sm({ esm_class: 0, ...cmd.mo }, (resp) => out({ event: 'mo', ok: resp.command_status === 0, short_message: cmd.mo.short_message }));
      }
    }
  });
}

server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
