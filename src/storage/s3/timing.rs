//! Upstream latency and outcomes for the metrics: an SDK interceptor times
//! every attempt (retries count separately) from transmit to its end, so
//! streamed GETs and requests made outside `block_on` are measured too.

use std::time::Instant;

use aws_sdk_s3::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

#[derive(Debug)]
pub(super) struct Timing {
    pub backend: String,
}

#[derive(Debug, Clone)]
struct AttemptStarted(Instant);

impl Storable for AttemptStarted {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Timing {
    fn name(&self) -> &'static str {
        "deltaglider-upstream-metrics"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStarted(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(AttemptStarted(t)) = cfg.load::<AttemptStarted>() {
            let status = ctx.response().map(|r| r.status().as_u16());
            crate::metrics::upstream(&self.backend, t.elapsed(), status);
        }
        Ok(())
    }
}
