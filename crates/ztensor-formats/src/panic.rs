//! The text of a caught panic, for the guards that turn a panic in a parser
//! or a binding into an error instead of a crash.

use std::any::Any;

/// The message a panic was raised with (`panic!` makes a `&str` or a
/// `String` payload), or "unknown panic" for any other payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

#[cfg(test)]
mod tests {
    use super::panic_message;
    use std::panic::catch_unwind;

    #[test]
    fn every_payload_kind() {
        let text = catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(&*text), "static text");
        let formatted = catch_unwind(|| panic!("n = {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "n = 7");
        let other = catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "unknown panic");
    }
}
