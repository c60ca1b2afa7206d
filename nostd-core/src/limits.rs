//! Every size limit of the data model, in one place. Units come last in the
//! name. Entry points check these before an event is built, and the decoder
//! and the state machine check them again, so an oversized value can never
//! reach the log.

/// Largest vector dimension a collection may declare (pgvector's limit).
pub const DIM_MAX: u32 = 16_000;

/// Largest metadata value attached to one record.
pub const METADATA_BYTES_MAX: u32 = 64 * 1024;

/// Longest collection name, in bytes. Names are `[a-z0-9_]`, starting with a
/// letter, so bytes and characters agree.
pub const COLLECTION_NAME_BYTES_MAX: u32 = 64;

/// Most records in one atomic batch insert.
pub const BATCH_RECORDS_MAX: u32 = 100_000;

/// Largest `k` of a nearest-neighbour search through the search operation
/// (REST `POST /v1/collections/{name}/search`, Python `search`) and the
/// query DSL's `K`. A larger `k` is refused, never clamped: `k` is how
/// many rows the caller expects, and a silent clamp would return fewer
/// without saying so. `k` is at least 1.
pub const SEARCH_K_MAX: u32 = 10_000;

/// Largest `ef` (HNSW result-list size) of a search and the DSL's `EF`;
/// `ef` is at least 1. The search widens `ef` to `k` when it is smaller.
pub const SEARCH_EF_MAX: u32 = 10_000;

/// Default largest request body of the REST API (`--body-bytes-max`), in
/// bytes; the server may be configured with another value.
pub const REST_BODY_BYTES_DEFAULT: u32 = 64 * 1024 * 1024;

/// Largest estimated JSON size of one batch request the Python client
/// sends, in bytes: a batch larger than this is split, so that each part
/// stays below [`REST_BODY_BYTES_DEFAULT`] (and far below
/// [`EVENT_BYTES_MAX`]). Both client modes split alike, so they write the
/// same events.
pub const CLIENT_BATCH_BYTES_MAX: u32 = 48 * 1024 * 1024;

/// Largest encoded event. A batch of `BATCH_RECORDS_MAX` records of high
/// dimension must be split by the client to stay below it.
pub const EVENT_BYTES_MAX: u32 = 256 * 1024 * 1024;

/// Most writes (events) one SQL transaction commits as one event; its
/// encoding must also stay below [`EVENT_BYTES_MAX`].
pub const TRANSACTION_EVENTS_MAX: u32 = 100_000;

/// Most savepoints one transaction block holds at once.
pub const SAVEPOINTS_MAX: u32 = 1_000;

/// Most named prepared statements one Postgres connection keeps
/// (drivers cache about 100 and close or `DEALLOCATE` the rest).
pub const PG_NAMED_STATEMENTS_MAX: u32 = 4_096;

/// Most named portals one Postgres connection holds at once (they last
/// until the transaction ends).
pub const PG_NAMED_PORTALS_MAX: u32 = 4_096;

/// Most advisory lock keys a server holds at once, over all sessions
/// (PostgreSQL's default lock table holds about 6,400).
pub const ADVISORY_LOCKS_MAX: u32 = 8_192;

/// Most collections in one database.
pub const COLLECTIONS_MAX: u32 = 4_096;

/// Largest HNSW `m` (links per node and layer) a collection may declare.
pub const HNSW_M_MAX: u16 = 256;

/// Largest HNSW `ef_construction` a collection may declare.
pub const HNSW_EF_CONSTRUCTION_MAX: u16 = 4_096;

/// Largest HNSW result-list size a search may ask for
/// (`valori.ef_search`, `ef` in REST, Python and the DSL).
pub const EF_SEARCH_MAX: u32 = 100_000;

/// Most placeholders (`$1` … `$n`) one statement may have: the most the
/// Postgres protocol can bind (its count is an `i16`).
pub const STATEMENT_PARAMS_MAX: u32 = 32_767;

/// Prepared plans the statement layer keeps for statements it sees again
/// (keyed by their text); the oldest is dropped beyond it.
pub const PLAN_CACHE_ENTRIES_MAX: u32 = 256;

/// Prepared statements the Flight SQL front end keeps open for all
/// clients together (ADBC prepares every statement); the oldest is
/// closed beyond it.
pub const FLIGHT_PREPARED_STATEMENTS_MAX: u32 = 4_096;

/// Absolute value bound of a Q16.16 component, in units of the real value:
/// inputs with `|x| >= COMPONENT_ABS_LIMIT` are rejected.
pub const COMPONENT_ABS_LIMIT: f32 = 32_768.0;

/// Longest SQL text of one statement, in bytes, refused before it is
/// parsed (the text of a DSL query too). A 1024-dimensional vector literal
/// takes about 12 KiB, so this leaves room for a batch of them while
/// bounding what one statement can make the parser and planner do; bulk
/// loads use `COPY`.
pub const SQL_BYTES_MAX: u32 = 1024 * 1024;

/// Most events in one page of `GET /v1/proof/log` (events with their
/// inclusion proofs, what `valori verify --url` replays).
pub const LOG_PAGE_EVENTS_MAX: u32 = 1_024;

/// Encoded event bytes after which a page of `GET /v1/proof/log` ends; a
/// page always holds at least one event, which may be as large as
/// `EVENT_BYTES_MAX`.
pub const LOG_PAGE_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// Most settings one Postgres session stores for `SHOW` beyond the ones
/// Valori uses (`SET application_name = …` and the like); bounds what a
/// client can make the server keep per connection.
pub const SESSION_SETTINGS_MAX: u32 = 256;

/// Longest name of a session setting, in bytes (Postgres's identifier
/// limit).
pub const SESSION_SETTING_NAME_BYTES_MAX: u32 = 63;

/// Longest value of a session setting, in bytes.
pub const SESSION_SETTING_VALUE_BYTES_MAX: u32 = 4096;

/// Deepest nesting of parentheses and brackets in one SQL statement or DSL
/// query, checked on the text before any parser sees it; a run of prefix
/// operators (`NOT NOT …`, `- - …`) nests the same way. Parsers, planners
/// and optimizers walk expression trees recursively; bounding the text's
/// shape bounds how deep any of them goes. SQL's own parser stops at 50
/// levels of its recursion, which this stays below.
pub const EXPRESSION_NESTING_MAX: u32 = 32;

/// Most tokens in one chain of an expression: the tokens between two
/// commas (or a bracket and a comma) of the same list, added to those of
/// the chains that enclose it and of the groups it continues
/// (`valori_query::sql_text::check_expression_bounds` has the rules). A
/// chain of `n` operators (`a OR b OR …`, `x + 1 + 1 …`, `x::int::int
/// …`) builds a tree `n` deep, so this bounds the depth of every
/// expression tree a client can make, while lists
/// (`IN (…)`, `VALUES (…), (…)`, vector literals) stay as wide as the
/// statement length allows. About 1,000 `AND`/`OR` terms fit; longer
/// disjunctions of equalities are written `IN (…)`. Each term is bounded
/// again by [`EXPRESSION_TERM_TOKENS_MAX`].
pub const EXPRESSION_TOKENS_MAX: u32 = 4_096;

/// Most tokens in one term of an expression: the tokens between two
/// `AND`s, `OR`s, commas or clause keywords (`WHERE`, `ORDER BY`, …),
/// counted like [`EXPRESSION_TOKENS_MAX`]. Arithmetic, cast and string
/// operators chain within a term, and DataFusion's simplifier takes time
/// that grows faster than the square of such a chain's depth (a debug
/// build: 0.2 s at 64 nested `+ 0`, 2.4 s at 192), so terms are kept far
/// shorter than boolean chains, which it plans in linear time.
pub const EXPRESSION_TERM_TOKENS_MAX: u32 = 128;

/// Largest message between the nodes of a cluster (one batch of log
/// entries, one snapshot chunk, one reply), in bytes as sent. Entries
/// travel in batches of at most `CLUSTER_BATCH_ENTRIES_MAX`.
pub const CLUSTER_MESSAGE_BYTES_MAX: u32 = 1024 * 1024 * 1024;

/// Log entries sent to a follower in one message.
pub const CLUSTER_BATCH_ENTRIES_MAX: u32 = 16;

/// Bytes of a snapshot sent to a catching-up node per message: small
/// enough that a follower writes one well within an election timeout.
pub const CLUSTER_SNAPSHOT_CHUNK_BYTES_MAX: u32 = 1024 * 1024;

/// Most columns a declared table may have (vector column included).
pub const TABLE_COLUMNS_MAX: u32 = 256;

/// Longest column name, in bytes (Postgres's identifier limit).
pub const COLUMN_NAME_BYTES_MAX: u32 = 63;

/// Longest `DEFAULT` expression a column keeps for its catalogs, in bytes.
pub const COLUMN_DEFAULT_BYTES_MAX: u32 = 1024;

/// Largest scalar value (text, bytea, JSON, numeric, array) of one table
/// cell.
pub const VALUE_BYTES_MAX: u32 = 1024 * 1024;

/// Most actions one `ALTER TABLE` event carries: enough to drop every
/// column of a table and add as many.
pub const ALTER_ACTIONS_MAX: u32 = 2 * TABLE_COLUMNS_MAX;
