// A minimal SMSC on node-smpp (written by others, not us): the interop peer for
// Ujumbe's SmppConnector. Usage: node smsc.js [port] [latencyMs] [receiptDelayMs]
// (or env SMSC_PORT, SMSC_LATENCY_MS, SMSC_RECEIPT_DELAY_MS, SMSC_SYSTEM_ID, SMSC_PASSWORD).
// Prints "listening <port>" once ready; port 0 picks a free one.
const smpp = require('smpp');
const env = process.env;
const port = Number(process.argv[2] || env.SMSC_PORT || 2775);
const latency = Number(process.argv[3] || env.SMSC_LATENCY_MS || 0);
const receiptDelay = Number(process.argv[4] || env.SMSC_RECEIPT_DELAY_MS || 100);
const systemId = env.SMSC_SYSTEM_ID || 'ujumbe';
const password = env.SMSC_PASSWORD || 'secret';
let nextId = 0x5a000000;
const stamp = () => new Date().toISOString().replace(/[-T:]/g, '').slice(2, 12);

const server = smpp.createServer((session) => {
  let bound = false;
  const bind = (pdu) => {
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      return;
    }
    bound = true;
    session.send(pdu.response({ system_id: 'node-smsc' }));
  };
  ['bind_transceiver', 'bind_transmitter', 'bind_receiver'].forEach((c) => session.on(c, bind));
  session.on('submit_sm', (pdu) => {
    if (!bound) return session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
    const id = (nextId++).toString(16);
    const submitted = stamp();
    setTimeout(() => session.send(pdu.response({ message_id: id })), latency);
    if (pdu.registered_delivery & 1) {
      setTimeout(() => session.deliver_sm({
        source_addr: pdu.destination_addr,
        destination_addr: pdu.source_addr,
        esm_class: 4,
        short_message: `id:${id} sub:001 dlvrd:001 submit date:${submitted} done date:${stamp()} stat:DELIVRD err:000 text:`,
      }), latency + receiptDelay);
    }
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
  session.on('error', () => {});
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
