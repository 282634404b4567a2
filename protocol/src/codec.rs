//! Versioned MessagePack encoding of everything that crosses Redis.
//!
//! Every message is a MessagePack map whose `v` field is the schema version. Decoding checks the
//! version first, so a message from a newer writer is a typed [`DecodeError::UnknownVersion`],
//! never a panic or a half-understood value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u16 = 1;

/// The stream-entry field that carries an encoded message.
pub const PAYLOAD_FIELD: &str = "m";

/// Why bytes could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message has schema version {found}; this build reads version {SCHEMA_VERSION}")]
    UnknownVersion { found: u64 },
    #[error("message is not valid MessagePack for this schema: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    #[error("stream entry has no `{PAYLOAD_FIELD}` field")]
    MissingPayload,
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    v: u64,
}

/// Encodes a message as a MessagePack map (field names kept, so readers can skip unknown ones).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing our own derive-generated types into a Vec cannot fail: no I/O, no maps with
    // non-string keys, no custom serializers that return errors.
    rmp_serde::to_vec_named(message).expect("protocol types always encode")
}

/// Decodes a message, checking its schema version first.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe = rmp_serde::from_slice(bytes)?;
    if probe.v != u64::from(SCHEMA_VERSION) {
        return Err(DecodeError::UnknownVersion { found: probe.v });
    }
    Ok(rmp_serde::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandEnvelope, ErrorInfo, Outcome, Reply};
    use crate::instance::Platform;
    use crate::time::Timestamp;
    use uuid::Uuid;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn fixed_envelope(command: Command) -> CommandEnvelope {
        let id = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001);
        CommandEnvelope {
            v: SCHEMA_VERSION,
            command_id: id,
            correlation_id: id,
            idempotency_key: Some("k1".into()),
            instance_id: Some(Uuid::from_u128(2)),
            platform: Platform::Process,
            issued_at: Timestamp(1_000),
            deadline: Timestamp(31_000),
            attempt: 1,
            trace: None,
            trace_state: None,
            reply_to: Some("draas:{api-n1}:replies".into()),
            origin: crate::command::Origin::Client,
            command,
            actor: None,
            tenant: None,
        }
    }

    /// Golden bytes: a change here is a wire-format change and needs a new schema version.
    #[test]
    fn golden_start_envelope() {
        let bytes = encode(&fixed_envelope(Command::Start));
        assert_eq!(
            hex(&bytes),
            concat!(
                "8da176",
                "01",
                "a9636f6d6d616e644964",
                "c410",
                "01920000000070008000000000000001",
                "ad636f7272656c6174696f6e4964",
                "c410",
                "01920000000070008000000000000001",
                "ae6964656d706f74656e63794b6579",
                "a26b31",
                "aa696e7374616e63654964",
                "c410",
                "00000000000000000000000000000002",
                "a8706c6174666f726d",
                "a770726f63657373",
                "a86973737565644174",
                "cd03e8",
                "a8646561646c696e65",
                "cd7918",
                "a7617474656d7074",
                "01",
                "a57472616365",
                "c0",
                "a77265706c79546f",
                "b664726161733a7b6170692d6e317d3a7265706c696573",
                "a66f726967696e",
                "a6636c69656e74",
                "a7636f6d6d616e64",
                "81a46b696e64a57374617274",
            )
        );
        let back: CommandEnvelope = decode(&bytes).unwrap();
        assert_eq!(back, fixed_envelope(Command::Start));
    }

    #[test]
    fn golden_apply_config_command() {
        let bytes = encode(&Command::ApplyConfig { generation: 7 });
        assert_eq!(
            hex(&bytes),
            "82a46b696e64ab6170706c79436f6e666967aa67656e65726174696f6e07"
        );
    }

    #[test]
    fn every_command_round_trips() {
        for c in [
            Command::Start,
            Command::Stop,
            Command::Restart,
            Command::Delete,
            Command::ApplyConfig { generation: 3 },
            Command::Ping,
            Command::Logs { tail: 9 },
        ] {
            let env = fixed_envelope(c);
            assert_eq!(decode::<CommandEnvelope>(&encode(&env)).unwrap(), env);
        }
    }

    #[test]
    fn reply_round_trips_with_json_result() {
        let reply = Reply {
            v: SCHEMA_VERSION,
            command_id: Uuid::from_u128(1),
            correlation_id: Uuid::from_u128(1),
            instance_id: None,
            platform: Platform::Docker,
            worker: "w1".into(),
            completed_at: Timestamp(5),
            outcome: Outcome::Succeeded {
                result: serde_json::json!({"pid": 12, "ok": true}),
            },
            attempts: 2,
        };
        assert_eq!(decode::<Reply>(&encode(&reply)).unwrap(), reply);
        let failed = Reply {
            outcome: Outcome::Failed {
                error: ErrorInfo::new("boom", "it broke"),
            },
            ..reply
        };
        assert_eq!(decode::<Reply>(&encode(&failed)).unwrap(), failed);
    }

    #[test]
    fn unknown_version_is_typed() {
        let mut env = fixed_envelope(Command::Ping);
        env.v = 99;
        let err = decode::<CommandEnvelope>(&encode(&env)).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnknownVersion { found: 99 }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_typed_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\xc1",
            b"hello",
            b"\x81\xa1v\x01",
            b"\x92\x01\x02",
        ] {
            assert!(decode::<CommandEnvelope>(bytes).is_err());
        }
    }
}
