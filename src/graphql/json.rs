//! Answers as JSON text. A trace's answer is mostly span texts, and serde_json escapes a
//! string a byte at a time: callgrind put that at 17% of a trace-detail request's
//! instructions. sonic-rs scans strings with SIMD and writes the same JSON.
//!
//! Lists answered in one pass (`types::lists`) are written as JSON while they are
//! resolved, straight from their rows, and travel through the engine as one value
//! holding that text (`prewritten`): building them as GraphQL values (an ordered map per
//! object, each key hashed), copying their texts in, and freeing it all after writing
//! was a third of a trace detail's instructions. `Value::Binary` carries that text: no
//! field of this schema outputs binary data (a test holds the schema to it), so the
//! answer writer splices every such value as it is.

use std::cell::RefCell;
use std::io;

use async_graphql::{Response, ScalarType, Value};
use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use sonic_rs::format::{CompactFormatter, Formatter};

thread_local! {
    /// Each thread writes its answers here first. sonic-rs reserves room for the worst
    /// escaping of every string before writing it, so a buffer begun anew for each answer
    /// was reallocated over and over as it grew (4% of a trace detail's instructions);
    /// this one keeps its room, and the answer is copied out at its exact size.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Room a thread's buffer may keep between answers; a larger answer's is let go.
const SCRATCH_KEPT_BYTES: usize = 1 << 20;

/// Runs `write` on the thread's buffer, emptied, and returns what `keep` makes of its
/// text. A nested call (none is expected) gets a buffer of its own.
fn with_scratch<T>(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>, keep: impl FnOnce(&[u8]) -> T) -> io::Result<T> {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let kept = write(&mut buffer).map(|()| keep(&buffer));
            if buffer.capacity() > SCRATCH_KEPT_BYTES {
                *buffer = Vec::new();
            }
            kept
        }
        Err(_) => {
            let mut buffer = Vec::new();
            write(&mut buffer).map(|()| keep(&buffer))
        }
    })
}

/// The JSON of an answer as text, as sent over WebSocket.
pub fn response_json(response: &Response) -> String {
    // Writing into memory fails only where serde would refuse a value (a map key that
    // is not a string), which GraphQL answers cannot hold; the fallback keeps a reply
    // well-formed regardless.
    with_scratch(|out| write_response(out, response, &mut splice), <[u8]>::to_vec)
        .ok()
        .and_then(|json| String::from_utf8(json).ok())
        .unwrap_or_else(|| r#"{"data":null}"#.to_owned())
}

/// The JSON of an answer as the pieces it is sent in over HTTP: the text written
/// around its prewritten values, and those values themselves, shared. A trace's answer
/// is nearly all one prewritten list, which splicing copied twice more (into the
/// answer, and out of the thread's buffer): 6% of a trace detail's instructions.
pub fn response_pieces(response: &Response) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut cut = |out: &mut Vec<u8>, json: &Bytes| {
        pieces.push(Bytes::copy_from_slice(out));
        out.clear();
        pieces.push(json.clone());
    };
    match with_scratch(|out| write_response(out, response, &mut cut), Bytes::copy_from_slice) {
        Ok(last) => {
            pieces.push(last);
            pieces.retain(|piece| !piece.is_empty());
            pieces
        }
        Err(_) => vec![Bytes::from_static(br#"{"data":null}"#)],
    }
}

/// A value whose JSON `write` puts in the buffer it is given, written now and spliced
/// into the answer as it is.
pub fn prewritten(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Value> {
    with_scratch(write, |json| Value::Binary(json.to_vec().into()))
}

/// Puts a prewritten value's text in the answer.
fn splice(out: &mut Vec<u8>, json: &Bytes) {
    out.extend_from_slice(json);
}

/// As serde would write `Response` (`data`, then `extensions` and `errors` when there
/// are any), with each prewritten value passed to `splice`.
fn write_response(
    out: &mut Vec<u8>,
    response: &Response,
    splice: &mut impl FnMut(&mut Vec<u8>, &Bytes),
) -> io::Result<()> {
    out.extend_from_slice(br#"{"data":"#);
    write_value_splicing(out, &response.data, splice)?;
    if !response.extensions.is_empty() {
        out.extend_from_slice(br#","extensions":"#);
        sonic_rs::to_writer(&mut *out, &response.extensions).map_err(io::Error::other)?;
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(br#","errors":"#);
        sonic_rs::to_writer(&mut *out, &response.errors).map_err(io::Error::other)?;
    }
    out.push(b'}');
    Ok(())
}

pub fn write_value(out: &mut Vec<u8>, value: &Value) -> io::Result<()> {
    write_value_splicing(out, value, &mut splice)
}

fn write_value_splicing(
    out: &mut Vec<u8>,
    value: &Value,
    splice: &mut impl FnMut(&mut Vec<u8>, &Bytes),
) -> io::Result<()> {
    match value {
        Value::Null => write_null(out)?,
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => sonic_rs::to_writer(&mut *out, number).map_err(io::Error::other)?,
        Value::String(text) => write_str(out, text)?,
        Value::Enum(name) => write_str(out, name)?,
        Value::Binary(json) => splice(out, json),
        Value::List(items) => write_list(out, items, |out, item| write_value_splicing(out, item, splice))?,
        Value::Object(fields) => write_object(
            out,
            fields.iter().map(|(key, value)| (key.as_str(), value)),
            |out, value| write_value_splicing(out, value, splice),
        )?,
    }
    Ok(())
}

/// `items` as a JSON list, each written by `write_item`.
pub fn write_list<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    write_item: impl FnMut(&mut Vec<u8>, T) -> io::Result<()>,
) -> io::Result<()> {
    write_delimited(out, (b'[', b']'), items, write_item)
}

/// A JSON object of `members` (key, value), each value written by `write_member`.
pub fn write_object<'k, T>(
    out: &mut Vec<u8>,
    members: impl IntoIterator<Item = (&'k str, T)>,
    mut write_member: impl FnMut(&mut Vec<u8>, T) -> io::Result<()>,
) -> io::Result<()> {
    write_delimited(out, (b'{', b'}'), members, |out, (key, value)| {
        write_str(out, key)?;
        out.push(b':');
        write_member(out, value)
    })
}

fn write_delimited<T>(
    out: &mut Vec<u8>,
    (open, close): (u8, u8),
    items: impl IntoIterator<Item = T>,
    mut write_item: impl FnMut(&mut Vec<u8>, T) -> io::Result<()>,
) -> io::Result<()> {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(out, item)?;
    }
    out.push(close);
    Ok(())
}

pub fn write_null(out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(b"null");
    Ok(())
}

/// `text` as a JSON string, escaped with SIMD.
pub fn write_str(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    CompactFormatter.write_string_fast(out, text, true)
}

/// A scalar as the engine shows it.
pub fn write_scalar(out: &mut Vec<u8>, scalar: &impl ScalarType) -> io::Result<()> {
    write_value(out, &scalar.to_value())
}

/// `value` written by `write`, or `null` when absent.
pub fn write_optional<T>(
    out: &mut Vec<u8>,
    value: Option<T>,
    write: impl FnOnce(&mut Vec<u8>, T) -> io::Result<()>,
) -> io::Result<()> {
    match value {
        Some(value) => write(out, value),
        None => write_null(out),
    }
}

/// A UUID as the engine shows it (lower case, hyphenated), without formatting machinery.
pub fn write_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) -> io::Result<()> {
    out.push(b'"');
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
    Ok(())
}

/// A time as the engine shows it (`to_rfc3339`: seconds, then as many fraction digits
/// as it needs of 3, 6 or 9, and `+00:00`), its digits written directly: chrono's
/// formatting of two times a span was 5% of a trace detail's instructions. Years
/// beyond four digits and leap seconds are left to chrono.
pub fn write_datetime(out: &mut Vec<u8>, time: &DateTime<Utc>) -> io::Result<()> {
    let (date, clock) = (time.date_naive(), time.time());
    let (year, nano) = (date.year(), clock.nanosecond());
    let Some(year) = u32::try_from(year).ok().filter(|year| *year <= 9999) else {
        return write_str(out, &time.to_rfc3339());
    };
    if nano >= 1_000_000_000 {
        return write_str(out, &time.to_rfc3339());
    }
    let mut text = *b"\"0000-00-00T00:00:00.000000000";
    put_digits(&mut text[1..5], year);
    put_digits(&mut text[6..8], date.month());
    put_digits(&mut text[9..11], date.day());
    put_digits(&mut text[12..14], clock.hour());
    put_digits(&mut text[15..17], clock.minute());
    put_digits(&mut text[18..20], clock.second());
    let fraction = match (nano, nano % 1_000_000, nano % 1_000) {
        (0, _, _) => 0,
        (_, 0, _) => put_digits(&mut text[21..24], nano / 1_000_000),
        (_, _, 0) => put_digits(&mut text[21..27], nano / 1_000),
        _ => put_digits(&mut text[21..30], nano),
    };
    let end = if fraction == 0 { 20 } else { 21 + fraction };
    out.extend_from_slice(&text[..end]);
    out.extend_from_slice(b"+00:00\"");
    Ok(())
}

/// Writes `value` in decimal into `digits`, zero-padded (it has no more digits than
/// that); returns how many there are.
fn put_digits(digits: &mut [u8], value: u32) -> usize {
    let mut rest = value;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    digits.len()
}

/// Stored JSON as the engine shows it (what `async_graphql::to_value` makes of it,
/// written).
pub fn write_json(out: &mut Vec<u8>, json: &serde_json::Value) -> io::Result<()> {
    sonic_rs::to_writer(&mut *out, json).map_err(io::Error::other)
}
#[cfg(test)]
mod tests {
    use async_graphql::{Name, Number, Value};
    use proptest::strategy::Strategy;

    use super::*;

    #[test]
    fn answers_read_back_as_serde_json_writes_them() {
        let texts = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "controls \u{0} \u{1} \u{8} \u{b} \u{c} \u{1f} \t \n \r \u{7f}",
            "unicode é ü 漢字 😀 \u{2028} \u{2029}",
            &"long ".repeat(300),
            &format!("{}\"{}", "x".repeat(31), "\n".repeat(33)),
        ];
        let numbers = [
            Number::from(0),
            Number::from(i64::MIN),
            Number::from(i64::MAX),
            Number::from(u64::MAX),
            Number::from_f64(0.1).unwrap(),
            Number::from_f64(-1.5e-7).unwrap(),
            Number::from_f64(1e21).unwrap(),
            Number::from_f64(123456.789).unwrap(),
        ];
        let mut object = async_graphql::indexmap::IndexMap::new();
        for (i, text) in texts.iter().enumerate() {
            object.insert(Name::new(format!("text{i}")), Value::String((*text).to_owned()));
        }
        for (i, number) in numbers.iter().enumerate() {
            object.insert(Name::new(format!("number{i}")), Value::Number(number.clone()));
        }
        object.insert(Name::new("null"), Value::Null);
        object.insert(Name::new("flag"), Value::Boolean(true));
        object.insert(Name::new("kind"), Value::Enum(Name::new("LLM")));
        object.insert(
            Name::new("list"),
            Value::List(vec![Value::Object(object.clone()), Value::List(vec![])]),
        );
        let mut response = Response::new(Value::Object(object));
        response.errors = vec![async_graphql::ServerError::new("bad \"input\"\n", None)];

        let ours: serde_json::Value = serde_json::from_str(&response_json(&response)).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours["data"]["text3"], texts[3]);
        assert_eq!(ours["data"]["number3"].as_u64(), Some(u64::MAX));
        assert_eq!(ours["data"]["number5"].as_f64(), Some(-1.5e-7));

        // A small answer after a large one on the same thread is only itself.
        let small = Response::new(Value::Boolean(false));
        assert_eq!(response_json(&small), r#"{"data":false}"#);
    }

    #[test]
    fn prewritten_values_are_spliced_where_they_stand() {
        let list = prewritten(|out| {
            out.push(b'[');
            write_str(out, "a \"quoted\"\ntext")?;
            out.push(b',');
            write_optional(out, Some(&uuid::Uuid::nil()), write_uuid)?;
            out.push(b',');
            write_optional(out, None::<&i64>, write_scalar)?;
            out.push(b',');
            write_json(out, &serde_json::json!({"k": [1, 2.5, "x"]}))?;
            out.push(b']');
            Ok(())
        })
        .unwrap();
        let mut object = async_graphql::indexmap::IndexMap::new();
        object.insert(Name::new("before"), Value::Number(1.into()));
        object.insert(Name::new("spans"), list);
        object.insert(Name::new("after"), Value::List(vec![Value::Null]));
        let mut response = Response::new(Value::Object(object));
        response.errors = vec![async_graphql::ServerError::new("partial", None)];
        let expected = r#"{"data":{"before":1,"spans":["a \"quoted\"\ntext","00000000-0000-0000-0000-000000000000",null,{"k":[1,2.5,"x"]}],"after":[null]},"errors":[{"message":"partial"}]}"#;
        assert_eq!(response_json(&response), expected);

        // Over HTTP the same text, in pieces: the prewritten list is sent as it is, not copied.
        let pieces = response_pieces(&response);
        assert_eq!(pieces.concat(), expected.as_bytes());
        let Value::Object(data) = &response.data else {
            unreachable!()
        };
        let Value::Binary(spans) = &data["spans"] else {
            unreachable!()
        };
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[1].as_ptr(), spans.as_ptr());
    }

    #[test]
    fn an_answer_without_prewritten_values_is_one_piece() {
        let response = Response::new(Value::List(vec![Value::Boolean(true), Value::Null]));
        let pieces = response_pieces(&response);
        assert_eq!(pieces, vec![Bytes::from_static(br#"{"data":[true,null]}"#)]);
    }

    #[test]
    fn a_value_written_while_an_answer_is_written_has_a_buffer_of_its_own() {
        let inner = with_scratch(
            |out| {
                out.extend_from_slice(b"outer");
                let inner = prewritten(|out| write_str(out, "inner"))?;
                write_value(out, &inner)
            },
            <[u8]>::to_vec,
        )
        .unwrap();
        assert_eq!(inner, br#"outer"inner""#);
    }

    fn written(write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = vec![];
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn times_are_written_as_the_engine_shows_them(
            seconds in -400_000_000_000i64..400_000_000_000,
            nanos in proptest::prop_oneof![
                proptest::strategy::Just(0u32),
                (1u32..1000).prop_map(|ms| ms * 1_000_000),
                (1u32..1_000_000).prop_map(|us| us * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            let time = DateTime::from_timestamp(seconds, nanos).unwrap();
            let theirs = written(|out| write_scalar(out, &time));
            proptest::prop_assert_eq!(written(|out| write_datetime(out, &time)), theirs);
        }

        #[test]
        fn ids_are_written_as_the_engine_shows_them(bits in proptest::prelude::any::<u128>()) {
            let id = uuid::Uuid::from_u128(bits);
            proptest::prop_assert_eq!(written(|out| write_uuid(out, &id)), written(|out| write_scalar(out, &id)));
        }
    }

    #[test]
    fn times_at_the_edges_are_written_as_the_engine_shows_them() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        for time in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::UNIX_EPOCH,
            DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap(),
            DateTime::from_timestamp(-62_167_219_200, 0).unwrap(),
            DateTime::from_timestamp(-62_167_219_201, 1_000).unwrap(),
            leap,
        ] {
            assert_eq!(
                written(|out| write_datetime(out, &time)),
                written(|out| write_scalar(out, &time)),
                "{time:?}"
            );
        }
    }

    /// Prewritten values travel as `Value::Binary`, so no field may output binary data:
    /// the schema's scalars are these, none of them binary.
    #[test]
    fn no_field_outputs_binary_data() {
        let sdl = crate::graphql::sdl();
        let scalars: Vec<&str> = sdl.lines().filter_map(|line| line.strip_prefix("scalar ")).collect();
        assert_eq!(scalars, ["DateTime", "JSON", "UUID"]);
    }
}
