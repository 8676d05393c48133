//! Classifier worker: AppealFiled → the appeal's classification stored → AppealClassified.

use crate::{parse_uuid, sqlx_error, store_error, Clock};
use hotline_bus::{Handler, HandlerError};
use hotline_classifier::hybrid::TopicClassifier;
use hotline_events::trace::traceparent_for_emitted;
use hotline_events::{convert, Actor, Event, Payload};
use hotline_store::{appeals, outbox, processed, PgPool};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "hotline-classifier";

/// The classifier in use; replaced in place when a new model is trained, so workers pick it up
/// without a restart.
pub struct ModelSlot(RwLock<Arc<TopicClassifier>>);

impl ModelSlot {
    pub fn new(classifier: TopicClassifier) -> Self {
        Self(RwLock::new(Arc::new(classifier)))
    }

    pub fn current(&self) -> Arc<TopicClassifier> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub fn replace(&self, classifier: TopicClassifier) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(classifier);
    }
}

pub struct ClassifierWorker<C> {
    pub pool: PgPool,
    pub model: Arc<ModelSlot>,
    pub clock: C,
}

impl<C: Clock> Handler for ClassifierWorker<C> {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let Payload::AppealFiled(filed) = &event.payload else {
            return Ok(());
        };
        let appeal_id = parse_uuid(&filed.appeal_id, "appeal_id")?;
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        if !processed::claim(&mut tx, NAME, event.event_id)
            .await
            .map_err(store_error)?
        {
            tracing::debug!("already classified; skipping redelivery");
            return Ok(());
        }
        let appeal = appeals::get(&mut tx, appeal_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                HandlerError::Failed(format!("appeal {appeal_id} is not in the database"))
            })?;
        let classification = self.model.current().classify(
            &appeal.content,
            appeal.district_hint.as_deref(),
            appeal.school_hint.as_deref(),
        );
        let now = self.clock.now();
        appeals::record_classification(&mut tx, appeal_id, &classification, now)
            .await
            .map_err(store_error)?;
        let classified = Event::new(
            appeal_id.to_string(),
            Actor::system(NAME),
            now,
            Payload::AppealClassified(convert::appeal_classified(
                &filed.appeal_id,
                &classification,
                appeal.historical,
            )),
        )
        .with_traceparent(traceparent_for_emitted(event.traceparent.as_deref()));
        outbox::enqueue(&mut tx, &classified)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(sqlx_error)?;
        metrics::counter!("hotline_appeals_classified_total", "topic" => classification.topic.as_str()).increment(1);
        tracing::info!(
            appeal_id = %appeal_id,
            topic = %classification.topic,
            confidence = classification.confidence,
            urgent = classification.urgent,
            "classified"
        );
        Ok(())
    }
}

/// Loads `model.bin` from `dir` whenever it changes (`hotline train` writes it atomically) and puts
/// it in the slot. A model that does not load is logged and the current one kept.
pub async fn run_model_reloader(
    slot: Arc<ModelSlot>,
    dir: PathBuf,
    load: impl Fn(&std::path::Path) -> Result<TopicClassifier, String> + Send + 'static,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let path = dir.join("model.bin");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = modified(&path);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = modified(&path);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        match load(&dir) {
            Ok(classifier) => {
                tracing::info!(
                    model_version = classifier.model_version(),
                    "new classifier model loaded"
                );
                slot.replace(classifier);
            }
            Err(error) => {
                tracing::error!(%error, dir = %dir.display(), "new model not loaded; keeping the current one")
            }
        }
    }
}
