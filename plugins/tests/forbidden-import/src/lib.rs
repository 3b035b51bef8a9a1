//! A test plugin that is valid but for one thing: `handle` opens a TCP connection, so the
//! component imports `wasi:sockets/*`. The host links no sockets and must refuse to load it.

use steward_plugin_sdk::{
    Description, Effect, Event, EventKinds, ObjectClaim, Plugin, PluginError, failed,
};

struct ForbiddenImport;

impl Plugin for ForbiddenImport {
    fn describe() -> Description {
        Description {
            name: "forbidden-import".into(),
            version: "0.1.0".into(),
            objects: vec![ObjectClaim {
                id: 42796,
                ddf: include_str!("../42796.xml").into(),
            }],
            events: EventKinds::COMMAND,
        }
    }

    fn handle(_event: Event) -> Result<Vec<Effect>, PluginError> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok(vec![]),
            Err(e) => Err(failed(format!("connect: {e}"))),
        }
    }
}

steward_plugin_sdk::export_plugin!(ForbiddenImport);
