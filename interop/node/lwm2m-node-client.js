// An independent LwM2M 1.0 client (lwm2m-node-lib, text format only, no DTLS) for Steward's
// interop tests. Usage: node lwm2m-node-client.js HOST PORT ENDPOINT
// Creates /3/0 with a Manufacturer (/3/0/0), registers, prints "registered <location>" and
// serves reads until it is killed.
'use strict';

const client = require('lwm2m-node-lib').client;
const [host, port, endpoint] = process.argv.slice(2);

client.init({
  client: { lifetime: '300', version: '1.0', logLevel: 'FATAL', ipProtocol: 'udp4', port: 0 },
});

client.registry.create('/3/0', (createError) => {
  if (createError) {
    console.error('create failed: ' + createError);
    process.exit(2);
  }
  client.registry.setResource('/3/0', '0', 'Node Manufacturer', (setError) => {
    if (setError) {
      console.error('setResource failed: ' + setError);
      process.exit(2);
    }
    client.register(host, Number(port), null, endpoint, (error, device) => {
      if (error) {
        console.error('register failed: ' + error);
        process.exit(1);
      }
      console.log('registered ' + device.location);
    });
  });
});
