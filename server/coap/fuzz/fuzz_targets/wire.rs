//! CoAP datagrams from the network: any bytes give a message or a `WireError`, and a message
//! that decodes encodes back to a datagram that decodes to the same message.
#![no_main]

use steward_coap::wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(msg) = wire::decode(data) else {
        return;
    };
    let again = wire::encode(&msg).expect("a decoded message encodes");
    assert_eq!(wire::decode(&again).as_ref(), Ok(&msg));
});
