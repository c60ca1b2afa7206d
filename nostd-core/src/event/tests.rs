//! Encoding tests: round trips for every kind, strictness of the decoder on
//! malformed input, and a byte-exact check of one encoding against the
//! layout written in docs/format.md.

use super::*;
use alloc::vec;
use proptest::prelude::*;

fn name(s: &str) -> CollectionName {
    CollectionName::new(s).unwrap()
}

fn arb_name() -> impl Strategy<Value = CollectionName> {
    "[a-z][a-z0-9_]{0,20}".prop_map(|s| CollectionName::new(&s).unwrap())
}

fn arb_metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        Just(Metric::L2),
        Just(Metric::InnerProduct),
        Just(Metric::Cosine)
    ]
}

fn arb_batch() -> impl Strategy<Value = Batch> {
    (1u32..6, 1usize..8).prop_flat_map(|(dim, n)| {
        (
            proptest::collection::vec(any::<u64>(), n),
            proptest::collection::vec(any::<u64>(), n),
            proptest::collection::vec(any::<i32>(), n * dim as usize),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5), n),
        )
            .prop_map(move |(ids, tags, vectors, metas)| {
                let mut b = Batch::new(dim);
                for i in 0..n {
                    b.push(
                        RecordId(ids[i]),
                        &vectors[i * dim as usize..(i + 1) * dim as usize],
                        tags[i],
                        &metas[i],
                    );
                }
                b
            })
    })
}

fn arb_plain_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            arb_name(),
            1u32..2000,
            arb_metric(),
            any::<u16>(),
            any::<u16>(),
            any::<u64>()
        )
            .prop_map(|(name, dim, metric, m, ef_construction, seed)| {
                Event::CreateCollection {
                    name,
                    config: CollectionConfig {
                        dim,
                        metric,
                        index: IndexParams {
                            m,
                            ef_construction,
                            seed,
                        },
                    },
                }
            }),
        arb_name().prop_map(|name| Event::DropCollection { name }),
        (
            arb_name(),
            any::<u64>(),
            proptest::collection::vec(any::<i32>(), 1..40),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(collection, id, vector, tag, metadata)| Event::Insert {
                collection,
                record: Record {
                    id: RecordId(id),
                    vector,
                    tag,
                    metadata
                },
            }),
        (arb_name(), arb_batch())
            .prop_map(|(collection, batch)| Event::InsertBatch { collection, batch }),
        (arb_name(), any::<u64>()).prop_map(|(collection, id)| Event::Delete {
            collection,
            id: RecordId(id)
        }),
        (arb_name(), any::<u64>(), any::<u64>()).prop_map(|(collection, id, tag)| Event::SetTag {
            collection,
            id: RecordId(id),
            tag
        }),
        (
            arb_name(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(collection, id, metadata)| Event::SetMetadata {
                collection,
                id: RecordId(id),
                metadata
            }),
        (any::<u64>(), any::<u64>()).prop_map(|(n, label)| Event::CreateNode {
            node: NodeId(n),
            label
        }),
        any::<u64>().prop_map(|n| Event::DeleteNode { node: NodeId(n) }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(f, t, label)| Event::CreateEdge {
            from: NodeId(f),
            to: NodeId(t),
            label
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(f, t, label)| Event::DeleteEdge {
            from: NodeId(f),
            to: NodeId(t),
            label
        }),
        (arb_name(), proptest::collection::vec(any::<u64>(), 1..20)).prop_map(
            |(collection, ids)| Event::DeleteBatch {
                collection,
                ids: ids.into_iter().map(RecordId).collect()
            }
        ),
        (
            arb_name(),
            proptest::collection::vec(any::<u64>(), 1..20),
            proptest::option::of(any::<u64>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))
        )
            .prop_filter("an update sets something", |(_, _, tag, metadata)| {
                tag.is_some() || metadata.is_some()
            })
            .prop_map(|(collection, ids, tag, metadata)| Event::UpdateBatch {
                collection,
                ids: ids.into_iter().map(RecordId).collect(),
                tag,
                metadata
            }),
        proptest::collection::vec(arb_name(), 1..6)
            .prop_map(|names| Event::DropCollections { names }),
        (
            arb_name(),
            proptest::collection::vec(arb_alter_action(), 1..5)
        )
            .prop_map(|(collection, actions)| Event::AlterTable {
                collection,
                actions
            }),
    ]
}

fn arb_column_name() -> impl Strategy<Value = alloc::string::String> {
    "[a-zé_][a-z0-9_ ]{0,20}"
}

fn arb_foreign_key() -> impl Strategy<Value = crate::table::ForeignKey> {
    (arb_column_name(), arb_name(), arb_column_name(), 0u8..4).prop_map(
        |(name, table, column, code)| crate::table::ForeignKey {
            name,
            table,
            column,
            on_delete: crate::table::OnDelete::from_code(code).unwrap(),
        },
    )
}

fn arb_alter_action() -> impl Strategy<Value = crate::table::AlterAction> {
    use crate::table::{AlterAction, ColumnDef, ColumnType, ScalarType, column_flags};
    prop_oneof![
        (
            arb_column_name(),
            1u8..=15,
            any::<u32>(),
            // Bits 6 and 7 of the encoded flags say whether an index name
            // and a foreign key follow; a definition carries them instead.
            any::<u8>().prop_map(|f| f & !(column_flags::INDEXED | column_flags::REFERENCES)),
            proptest::option::of("[ -~]{0,12}"),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
            proptest::option::of(arb_column_name()),
            proptest::option::of(arb_foreign_key()),
        )
            .prop_map(
                |(name, code, type_mod, flags, default, value, index, references)| {
                    AlterAction::AddColumn {
                        column: ColumnDef {
                            name,
                            ty: ColumnType::Scalar(ScalarType::from_code(code).unwrap()),
                            type_mod,
                            flags,
                            default,
                            index,
                            references,
                        },
                        value,
                    }
                }
            ),
        arb_column_name().prop_map(|name| AlterAction::DropColumn { name }),
        (arb_column_name(), arb_column_name())
            .prop_map(|(from, to)| AlterAction::RenameColumn { from, to }),
        arb_name().prop_map(|to| AlterAction::RenameTable { to }),
        (arb_column_name(), arb_column_name())
            .prop_map(|(column, name)| AlterAction::CreateIndex { column, name }),
        arb_column_name().prop_map(|name| AlterAction::DropIndex { name }),
        any::<u32>().prop_map(|dim| AlterAction::TypeVector { dim }),
        (arb_column_name(), arb_foreign_key())
            .prop_map(|(column, key)| AlterAction::AddForeignKey { column, key }),
        arb_column_name().prop_map(|name| AlterAction::DropConstraint { name }),
        (
            arb_column_name(),
            proptest::collection::vec(arb_column_name(), 1..4)
        )
            .prop_map(|(name, columns)| AlterAction::AddUnique {
                set: crate::table::UniqueSet { name, columns }
            }),
        (arb_column_name(), any::<u32>())
            .prop_map(|(column, type_mod)| AlterAction::SetTypeMod { column, type_mod }),
        (arb_column_name(), any::<bool>())
            .prop_map(|(column, not_null)| AlterAction::SetNotNull { column, not_null }),
        (arb_column_name(), proptest::option::of("[ -~]{0,40}"))
            .prop_map(|(column, default)| AlterAction::SetDefault { column, default }),
    ]
}

/// Any event, a transaction of two or three plain events among them.
fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => arb_plain_event(),
        1 => proptest::collection::vec(arb_plain_event(), 2..4)
            .prop_map(|events| Event::Transaction { events }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// decode(encode(e)) == e for every kind of event.
    #[test]
    fn round_trip(event in arb_event()) {
        let bytes = event.encode();
        prop_assert_eq!(Event::decode(&bytes), Ok(event));
    }

    /// Every strict prefix of a valid encoding is rejected as truncated,
    /// and one extra byte is rejected as trailing.
    #[test]
    fn prefixes_and_suffixes_rejected(event in arb_event()) {
        let bytes = event.encode();
        for cut in 0..bytes.len() {
            prop_assert!(Event::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(
            Event::decode(&longer).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes
        );
    }

    /// Arbitrary bytes never panic, and whatever decodes re-encodes to the
    /// same bytes (the encoding is canonical).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(event) = Event::decode(&bytes) {
            prop_assert_eq!(event.encode(), bytes);
        }
    }

    /// Single-byte corruptions of valid events never panic and stay
    /// canonical when they decode.
    #[test]
    fn mutated_events_never_panic(event in arb_event(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = event.encode();
        let i = at % bytes.len();
        bytes[i] = byte;
        if let Ok(decoded) = Event::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

/// The documented layout of a SetTag event, written out by hand from
/// docs/format.md: version 1, kind 6, name as u32 length + bytes, id and
/// tag as u64 little-endian.
#[test]
fn set_tag_layout_matches_format_doc() {
    let event = Event::SetTag {
        collection: name("docs"),
        id: RecordId(0x0102),
        tag: 7,
    };
    let want: Vec<u8> = vec![
        1, 6, // version, kind
        4, 0, 0, 0, b'd', b'o', b'c', b's', // name
        0x02, 0x01, 0, 0, 0, 0, 0, 0, // id
        7, 0, 0, 0, 0, 0, 0, 0, // tag
    ];
    assert_eq!(event.encode(), want);
}

/// The documented layouts of the batch events of one SQL statement,
/// written out by hand from docs/format.md.
#[test]
fn batch_event_layouts_match_format_doc() {
    let delete = Event::DeleteBatch {
        collection: name("d"),
        ids: vec![RecordId(1), RecordId(0x0203)],
    };
    let want: Vec<u8> = vec![
        1, 12, // version, kind
        1, 0, 0, 0, b'd', // name
        2, 0, 0, 0, // count
        1, 0, 0, 0, 0, 0, 0, 0, // id
        3, 2, 0, 0, 0, 0, 0, 0, // id
    ];
    assert_eq!(delete.encode(), want);
    let update = Event::UpdateBatch {
        collection: name("d"),
        ids: vec![RecordId(1)],
        tag: None,
        metadata: Some(vec![0xaa]),
    };
    let want: Vec<u8> = vec![
        1, 13, // version, kind
        1, 0, 0, 0, b'd', // name
        1, 0, 0, 0, // count
        1, 0, 0, 0, 0, 0, 0, 0, // id
        2, // flags: metadata only
        1, 0, 0, 0, 0xaa, // metadata
    ];
    assert_eq!(update.encode(), want);
    let drop = Event::DropCollections {
        names: vec![name("a"), name("bc")],
    };
    let want: Vec<u8> = vec![
        1, 14, // version, kind
        2, 0, 0, 0, // count
        1, 0, 0, 0, b'a', // name
        2, 0, 0, 0, b'b', b'c', // name
    ];
    assert_eq!(drop.encode(), want);
}

/// The batch events' counts and flags are checked by the decoder: no
/// empty or oversized id list, no unknown update flag, no empty or
/// oversized name list, and no allocation beyond the input.
#[test]
fn batch_event_counts_and_flags_checked() {
    let mut bytes = vec![1, kind::DELETE_BATCH, 1, 0, 0, 0, b'a'];
    bytes.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        Event::decode(&bytes).unwrap_err(),
        DecodeError {
            offset: 7,
            kind: DecodeErrorKind::BadBatchSize(0)
        }
    );
    let mut bytes = vec![1, kind::DELETE_BATCH, 1, 0, 0, 0, b'a'];
    bytes.extend_from_slice(&100_000u32.to_le_bytes());
    assert_eq!(
        Event::decode(&bytes).unwrap_err().kind,
        DecodeErrorKind::Truncated
    );
    let mut bytes = vec![1, kind::UPDATE_BATCH, 1, 0, 0, 0, b'a'];
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&5u64.to_le_bytes());
    for flags in [0u8, 4, 7] {
        let mut b = bytes.clone();
        b.push(flags);
        b.extend_from_slice(&[0; 12]);
        assert_eq!(
            Event::decode(&b).unwrap_err(),
            DecodeError {
                offset: 19,
                kind: DecodeErrorKind::BadUpdateFlags(flags)
            }
        );
    }
    let mut bytes = vec![1, kind::DROP_COLLECTIONS];
    bytes.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        Event::decode(&bytes).unwrap_err().kind,
        DecodeErrorKind::BadNameCount(0)
    );
    let mut bytes = vec![1, kind::DROP_COLLECTIONS];
    bytes.extend_from_slice(&4_096u32.to_le_bytes());
    assert_eq!(
        Event::decode(&bytes).unwrap_err().kind,
        DecodeErrorKind::Truncated
    );
}

/// Lengths that would need huge allocations are rejected before
/// allocating, with the offset of the length field.
#[test]
fn huge_lengths_rejected_without_allocation() {
    let mut bytes = vec![1, kind::INSERT_BATCH, 1, 0, 0, 0, b'a'];
    bytes.extend_from_slice(&100_000u32.to_le_bytes());
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    let err = Event::decode(&bytes).unwrap_err();
    assert_eq!(err.kind, DecodeErrorKind::Truncated);

    let mut bytes = vec![1, kind::SET_METADATA, 1, 0, 0, 0, b'a'];
    bytes.extend_from_slice(&9u64.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let err = Event::decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError {
            offset: 15,
            kind: DecodeErrorKind::MetadataTooLarge(u32::MAX)
        }
    );
}

/// Unknown versions, kinds, metrics and bad names are named in the error.
#[test]
fn unknown_codes_named() {
    assert_eq!(
        Event::decode(&[2, 1]).unwrap_err().kind,
        DecodeErrorKind::UnknownVersion(2)
    );
    assert_eq!(
        Event::decode(&[1, 99]).unwrap_err().kind,
        DecodeErrorKind::UnknownKind(99)
    );
    let mut bytes = vec![1, kind::DROP_COLLECTION, 2, 0, 0, 0, b'A', b'b'];
    assert_eq!(
        Event::decode(&bytes).unwrap_err().kind,
        DecodeErrorKind::BadName(NameError::BadCharacter)
    );
    bytes = vec![1, kind::CREATE_COLLECTION, 1, 0, 0, 0, b'a', 3, 0, 0, 0, 9];
    bytes.extend_from_slice(&[0; 12]);
    assert_eq!(
        Event::decode(&bytes).unwrap_err(),
        DecodeError {
            offset: 11,
            kind: DecodeErrorKind::UnknownMetric(9)
        }
    );
}

/// Collection names follow the documented rule.
#[test]
fn collection_names() {
    assert!(CollectionName::new("docs_2").is_ok());
    assert_eq!(CollectionName::new(""), Err(NameError::Empty));
    assert_eq!(CollectionName::new("2docs"), Err(NameError::BadCharacter));
    assert_eq!(CollectionName::new("Docs"), Err(NameError::BadCharacter));
    assert_eq!(CollectionName::new("a-b"), Err(NameError::BadCharacter));
    assert_eq!(
        CollectionName::new(&"a".repeat(65)),
        Err(NameError::TooLong)
    );
    assert!(CollectionName::new(&"a".repeat(64)).is_ok());
}

/// The documented layout of a transaction (docs/format.md): version,
/// kind 19, the event count, then each event's length and encoding.
/// Counts outside 2..=TRANSACTION_EVENTS_MAX and nested transactions
/// are refused.
#[test]
fn transaction_layout_matches_format_doc() {
    let a = Event::Delete {
        collection: name("c"),
        id: RecordId(7),
    };
    let b = Event::DeleteNode { node: NodeId(9) };
    let event = Event::Transaction {
        events: vec![a.clone(), b.clone()],
    };
    let mut expected = vec![1u8, 19, 2, 0, 0, 0];
    // Delete: version, kind 5, name length 1, "c", id 7.
    expected.extend_from_slice(&[15, 0, 0, 0, 1, 5, 1, 0, 0, 0, b'c']);
    expected.extend_from_slice(&7u64.to_le_bytes());
    // DeleteNode: version, kind 9, node 9.
    expected.extend_from_slice(&[10, 0, 0, 0, 1, 9]);
    expected.extend_from_slice(&9u64.to_le_bytes());
    assert_eq!(event.encode(), expected);
    assert_eq!(Event::decode(&expected), Ok(event.clone()));

    let mut one = expected[..6 + 4 + 15].to_vec();
    one[2] = 1;
    assert_eq!(
        Event::decode(&one).unwrap_err().kind,
        DecodeErrorKind::BadEventCount(1)
    );
    let mut nested = vec![1u8, 19, 2, 0, 0, 0];
    let inner = event.encode();
    nested.extend_from_slice(&(inner.len() as u32).to_le_bytes());
    nested.extend_from_slice(&inner);
    nested.extend_from_slice(&expected[6 + 4 + 15..]);
    assert_eq!(
        Event::decode(&nested).unwrap_err(),
        DecodeError {
            offset: 10,
            kind: DecodeErrorKind::NestedTransaction
        }
    );
}

/// docs/format.md: the `AlterTable` layout (kind 20), one action of each
/// kind, written out by hand.
#[test]
fn alter_table_layout_matches_format_doc() {
    use crate::table::{AlterAction, ColumnDef, ColumnType, ScalarType, column_flags};
    let event = Event::AlterTable {
        collection: name("t"),
        actions: vec![
            AlterAction::AddColumn {
                column: ColumnDef {
                    name: "c".into(),
                    ty: ColumnType::Scalar(ScalarType::Int32),
                    type_mod: 0,
                    flags: column_flags::NOT_NULL,
                    default: Some("5".into()),
                    index: None,
                    references: None,
                },
                value: Some(5i32.to_le_bytes().to_vec()),
            },
            AlterAction::DropColumn { name: "d".into() },
            AlterAction::RenameColumn {
                from: "a".into(),
                to: "bc".into(),
            },
            AlterAction::RenameTable { to: name("u") },
        ],
    };
    let want: Vec<u8> = vec![
        1, 20, // version, kind
        1, 0, 0, 0, b't', // table
        4, 0, 0, 0, // action count
        1, // add column
        1, 0, 0, 0, b'c', // column name
        3,    // type: integer
        0, 0, 0, 0, // type_mod
        1, // flags: NOT NULL
        1, 1, 0, 0, 0, b'5', // has_default, default text
        1, 4, 0, 0, 0, 5, 0, 0, 0, // has_value, value
        2, // drop column
        1, 0, 0, 0, b'd', // name
        3,    // rename column
        1, 0, 0, 0, b'a', 2, 0, 0, 0, b'b', b'c', // from, to
        4,    // rename table
        1, 0, 0, 0, b'u', // new name
    ];
    assert_eq!(event.encode(), want);
    assert_eq!(Event::decode(&want), Ok(event));
}

/// The decoder bounds an `AlterTable`: action count in
/// 1..=ALTER_ACTIONS_MAX, known ops only, names within the column name
/// limit, a value flag of 0 or 1, and no allocation beyond the input.
#[test]
fn alter_table_bounds_checked() {
    let head = |count: u32| {
        let mut b = vec![1, 20, 1, 0, 0, 0, b't'];
        b.extend_from_slice(&count.to_le_bytes());
        b
    };
    let kind_of = |bytes: &[u8]| Event::decode(bytes).unwrap_err().kind;
    assert_eq!(kind_of(&head(0)), DecodeErrorKind::BadActionCount(0));
    assert_eq!(
        kind_of(&head(limits::ALTER_ACTIONS_MAX + 1)),
        DecodeErrorKind::BadActionCount(limits::ALTER_ACTIONS_MAX + 1)
    );
    // Many actions announced, few bytes given: refused before allocating.
    assert_eq!(
        kind_of(&head(limits::ALTER_ACTIONS_MAX)),
        DecodeErrorKind::Truncated
    );
    let mut unknown_op = head(1);
    unknown_op.extend_from_slice(&[14, 0, 0, 0, 0]);
    assert_eq!(kind_of(&unknown_op), DecodeErrorKind::BadAlterAction);
    // Set default: a flag of 0 or 1, a default of at most
    // COLUMN_DEFAULT_BYTES_MAX bytes of UTF-8.
    let set_default = |flag: u8, default: &[u8]| {
        let mut b = head(1);
        b.extend_from_slice(&[13, 1, 0, 0, 0, b'c', flag]);
        b.extend_from_slice(&(default.len() as u32).to_le_bytes());
        b.extend_from_slice(default);
        b
    };
    assert_eq!(
        kind_of(&set_default(2, b"1")),
        DecodeErrorKind::BadAlterAction
    );
    let long = vec![b'1'; limits::COLUMN_DEFAULT_BYTES_MAX as usize + 1];
    assert_eq!(
        kind_of(&set_default(1, &long)),
        DecodeErrorKind::BadAlterAction
    );
    assert_eq!(
        kind_of(&set_default(1, &[0xff])),
        DecodeErrorKind::BadAlterAction
    );
    assert_eq!(
        Event::decode(&set_default(1, b"'y'")).map(|e| e.encode()),
        Ok(set_default(1, b"'y'"))
    );
    // A foreign key whose ON DELETE code is not one of the four.
    let mut bad_on_delete = head(1);
    bad_on_delete.push(8);
    for name in [&b"c"[..], b"k", b"p", b"id"] {
        bad_on_delete.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bad_on_delete.extend_from_slice(name);
    }
    let mut good = bad_on_delete.clone();
    good.push(2);
    assert!(Event::decode(&good).is_ok());
    bad_on_delete.push(4);
    assert_eq!(kind_of(&bad_on_delete), DecodeErrorKind::BadAlterAction);
    let mut long_name = head(1);
    long_name.push(2);
    long_name.extend_from_slice(&(limits::COLUMN_NAME_BYTES_MAX + 1).to_le_bytes());
    long_name.extend(core::iter::repeat_n(b'a', 64));
    assert_eq!(kind_of(&long_name), DecodeErrorKind::BadAlterAction);
    let mut bad_utf8 = head(1);
    bad_utf8.extend_from_slice(&[2, 1, 0, 0, 0, 0xff]);
    assert_eq!(kind_of(&bad_utf8), DecodeErrorKind::BadAlterAction);
    let mut bad_flag = head(1);
    bad_flag.extend_from_slice(&[1, 1, 0, 0, 0, b'c', 3, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(kind_of(&bad_flag), DecodeErrorKind::BadAlterAction);
    let mut huge_value = head(1);
    huge_value.extend_from_slice(&[1, 1, 0, 0, 0, b'c', 8, 0, 0, 0, 0, 0, 0, 1]);
    huge_value.extend_from_slice(&(limits::VALUE_BYTES_MAX + 1).to_le_bytes());
    assert_eq!(kind_of(&huge_value), DecodeErrorKind::BadAlterAction);
}

/// A Reindex is laid out as format.md says: kind 21, then the body of a
/// CreateCollection (name and configuration).
#[test]
fn reindex_layout_matches_format_doc() {
    let config = CollectionConfig {
        dim: 3,
        metric: Metric::Cosine,
        index: IndexParams {
            m: 12,
            ef_construction: 80,
            seed: 9,
        },
    };
    let event = Event::Reindex {
        collection: name("docs"),
        config,
    };
    let mut expected = vec![1u8, 21, 4, 0, 0, 0];
    expected.extend_from_slice(b"docs");
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.push(3);
    expected.extend_from_slice(&12u16.to_le_bytes());
    expected.extend_from_slice(&80u16.to_le_bytes());
    expected.extend_from_slice(&9u64.to_le_bytes());
    assert_eq!(event.encode(), expected);
    assert_eq!(Event::decode(&expected), Ok(event));
}
