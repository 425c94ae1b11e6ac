//! One module per peer system. Each implements `driver::System` (make an empty queue, open a
//! worker per connection, clean up) and a `driver::Worker` whose `op` is one operation of the
//! workload in that system's own durable form.

pub mod beanstalkd;
pub mod nats;
pub mod postgres;
pub mod rabbitmq;
pub mod redis;
