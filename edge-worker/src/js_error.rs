//! How failures of the Workers runtime's bindings map onto the storage port's
//! errors. R2 reports problems as thrown JavaScript errors whose message ends
//! in a numeric code, e.g. `... (10024)`.

use pier_core::store::StoreError;

/// R2's code for "the specified multipart upload does not exist".
const R2_NO_SUCH_UPLOAD: &str = "(10024)";
/// R2 codes for requests it refuses as malformed: entity too small (10011),
/// invalid object name (10020), invalid part (10025), invalid argument (10029),
/// invalid range (10039), parts of unequal size (10048).
const R2_INVALID_REQUEST: [&str; 6] = ["(10011)", "(10020)", "(10025)", "(10029)", "(10039)", "(10048)"];

/// Classifies a failed R2 call.
pub fn r2_error(operation: &str, key: &str, err: worker::Error) -> StoreError {
    let message = err.to_string();
    if message.contains(R2_NO_SUCH_UPLOAD) {
        StoreError::NotFound
    } else if R2_INVALID_REQUEST.iter().any(|code| message.contains(code)) || message.contains("RangeError") {
        StoreError::Invalid(format!("R2 {operation} {key}: {message}"))
    } else {
        StoreError::Unavailable(format!("R2 {operation} {key}: {message}"))
    }
}
