//! Answers as JSON text. A trace's answer is mostly span texts, and serde_json escapes a
//! string a byte at a time: callgrind put that at 17% of a trace-detail request's
//! instructions. sonic-rs scans strings with SIMD and writes the same JSON.

use std::cell::RefCell;

use async_graphql::Response;

thread_local! {
    /// Each thread writes its answers here first. sonic-rs reserves room for the worst
    /// escaping of every string before writing it, so a buffer begun anew for each answer
    /// was reallocated over and over as it grew (4% of a trace detail's instructions);
    /// this one keeps its room, and the answer is copied out at its exact size.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Room a thread's buffer may keep between answers; a larger answer's is let go.
const SCRATCH_KEPT_BYTES: usize = 1 << 20;

/// The JSON of an answer, as sent over HTTP.
pub fn response_bytes(response: &Response) -> Vec<u8> {
    SCRATCH.with_borrow_mut(|buffer| {
        buffer.clear();
        // Serializing a `Response` fails only on a map key that is not a string, which
        // GraphQL values cannot have; the fallback keeps a reply well-formed regardless.
        let answer = match sonic_rs::to_writer(&mut *buffer, response) {
            Ok(()) => buffer.clone(),
            Err(_) => br#"{"data":null}"#.to_vec(),
        };
        if buffer.capacity() > SCRATCH_KEPT_BYTES {
            *buffer = Vec::new();
        }
        answer
    })
}

/// The JSON of an answer as text, as sent over WebSocket.
pub fn response_json(response: &Response) -> String {
    String::from_utf8(response_bytes(response)).unwrap_or_else(|_| r#"{"data":null}"#.to_owned())
}

#[cfg(test)]
mod tests {
    use async_graphql::{Name, Number, Value};

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
}
