//! SQS errors in both wire shapes. The JSON protocol answers `{"__type":
//! "com.amazonaws.sqs#Name","message":...}` plus the `x-amzn-query-error: Code;Sender` header
//! that SDKs use to map the query-era error codes onto exception classes; the query protocol
//! answers an `<ErrorResponse>` document. Engine errors are mapped here and nowhere else.

use sluice_engine::EngineError;

#[derive(Debug, Clone)]
pub struct SqsError {
    /// The JSON `__type` short name, e.g. `QueueDoesNotExist`.
    pub name: &'static str,
    /// The query-protocol code, e.g. `AWS.SimpleQueueService.NonExistentQueue`.
    pub code: &'static str,
    pub status: u16,
    pub sender: bool,
    pub message: String,
}

impl SqsError {
    pub fn new(name: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        SqsError {
            name,
            code,
            status: 400,
            sender: true,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", "InvalidParameterValue", message)
    }
    pub fn missing(param: &str) -> Self {
        Self::new(
            "MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {param}."),
        )
    }
    pub fn no_queue() -> Self {
        Self::new(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        )
    }
    pub fn receipt_invalid() -> Self {
        Self::new(
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            "The input receipt handle is invalid.",
        )
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            message,
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        SqsError {
            name: "InternalError",
            code: "InternalError",
            status: 500,
            sender: false,
            message: message.into(),
        }
    }
}

impl From<EngineError> for SqsError {
    fn from(e: EngineError) -> Self {
        use EngineError::*;
        match e {
            QueueNotFound(_) => SqsError::no_queue(),
            InvalidQueueName { .. } => SqsError::invalid(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ),
            InvalidArgument { field, message } => SqsError::invalid(format!("Value for parameter {field} is invalid. Reason: {message}")),
            MessageTooLarge { limit, .. } => SqsError::invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )),
            InvalidReceipt => SqsError::receipt_invalid(),
            StaleReceipt => SqsError::invalid("Value for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."),
            MessageGone => SqsError::new(
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                "The specified message isn't in flight.",
            ),
            TooManyQueues { limit } => SqsError::new(
                "OverLimit",
                "OverLimit",
                format!("You have reached the limit of {limit} queues."),
            ),
            e @ TooManyQueuesOnUse { .. } => SqsError::new("OverLimit", "OverLimit", e.to_string()),
            TooManyWaiters { limit } => SqsError {
                name: "RequestThrottled",
                code: "RequestThrottled",
                status: 400,
                sender: true,
                message: format!("Too many receives are waiting (limit {limit})."),
            },
            StorageUnavailable(m) => SqsError {
                name: "ServiceUnavailable",
                code: "ServiceUnavailable",
                status: 503,
                sender: false,
                message: m,
            },
            e @ StorageFull { .. } => SqsError {
                name: "ServiceUnavailable",
                code: "ServiceUnavailable",
                status: 503,
                sender: false,
                message: e.to_string(),
            },
            Storage(m) => SqsError::internal(m),
            e @ PushQueue(_) => SqsError::unsupported(e.to_string()),
            e @ (NotFound { .. } | Conflict(_)) => SqsError::invalid(e.to_string()),
        }
    }
}
