//! Classifier worker: AppealFiled → the appeal's classification stored → AppealClassified.

use crate::{parse_uuid, sqlx_error, store_error, Clock};
use hotline_bus::{Handler, HandlerError};
use hotline_classifier::hybrid::TopicClassifier;
use hotline_events::{convert, Actor, Event, Payload};
use hotline_store::{appeals, outbox, processed, PgPool};
use std::sync::Arc;

pub const NAME: &str = "hotline-classifier";

pub struct ClassifierWorker<C> {
    pub pool: PgPool,
    pub classifier: Arc<TopicClassifier>,
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
        let classification = self.classifier.classify(
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
        .with_traceparent(event.traceparent.clone());
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
