use super::*;
use crate::coordinator::ModelBlob;
use crate::round::UpdateRefusal;

#[test]
fn codes_are_precise() {
    let id = ParticipantId::from("p");
    let cases = [
        (
            CoreError::Rejected(UpdateRejection::NonFinite {
                tensor: "w".into(),
                index: 0,
                value: f32::NAN,
            }),
            Code::InvalidArgument,
        ),
        (
            CoreError::Rejected(UpdateRejection::Oversized { got: 2, limit: 1 }),
            Code::ResourceExhausted,
        ),
        (
            CoreError::Refused(UpdateRefusal::StaleRound {
                id: id.clone(),
                current: 2,
                got: 1,
            }),
            Code::FailedPrecondition,
        ),
        (
            CoreError::Refused(UpdateRefusal::Duplicate {
                id: id.clone(),
                round: 1,
            }),
            Code::AlreadyExists,
        ),
        (
            CoreError::NotAllowed {
                id: id.clone(),
                job: "j".into(),
            },
            Code::PermissionDenied,
        ),
        (
            CoreError::NotListed {
                id: id.clone(),
                job: "j".into(),
            },
            Code::Unavailable,
        ),
        (CoreError::UnknownParticipant { id }, Code::PermissionDenied),
        (CoreError::ZeroExamples, Code::InvalidArgument),
    ];
    for (e, code) in cases {
        let s = core_status(&e);
        assert_eq!(s.code(), code, "{e}");
        assert_eq!(
            s.metadata()
                .get(REASON_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some(e.reason())
        );
    }
}

#[test]
fn chunks_cover_the_model_once() {
    let blob = ModelBlob {
        version: 3,
        bytes: bytes::Bytes::from(vec![7u8; 10]),
        sha256: "x".into(),
    };
    let chunks: Vec<proto::ModelChunk> = model_chunks(&blob, 4)
        .into_iter()
        .map(|c| c.expect("ok"))
        .collect();
    assert_eq!(chunks.len(), 3);
    assert!(chunks[0].info.is_some() && chunks[1].info.is_none());
    assert_eq!(chunks.iter().map(|c| c.data.len()).sum::<usize>(), 10);
    assert_eq!(chunks[2].offset, 8);
}

#[test]
fn messages_to_clients_carry_the_cause() {
    let cause = std::io::Error::other("bad DER at byte 3");
    let e = IdentityError::Parse(Box::new(cause));
    let message = wire::with_causes(&e);
    assert!(message.ends_with(": bad DER at byte 3"), "{message}");
    assert!(message.starts_with(&e.to_string()), "{message}");
    // A cause the message already ends with is not repeated.
    let plain = std::io::Error::other("no cause");
    assert_eq!(wire::with_causes(&plain), "no cause");
}
