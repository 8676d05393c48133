//! The working-day calendar in use: the schedules compiled in from seeds plus those loaded at run
//! time (`hotline calendar load`, `POST /api/v1/calendar`), re-read periodically so next year's
//! schedule takes effect without a redeploy.

use crate::Clock;
use hotline_domain::calendar::{china_offset, DayKind, WorkingCalendar};
use hotline_store::{PgPool, StoreError};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct CalendarSlot(RwLock<Arc<WorkingCalendar>>);

impl CalendarSlot {
    pub fn new(calendar: WorkingCalendar) -> Self {
        Self(RwLock::new(Arc::new(calendar)))
    }

    pub fn current(&self) -> Arc<WorkingCalendar> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub fn replace(&self, calendar: WorkingCalendar) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(calendar);
    }
}

/// The built-in schedules with the loaded ones on top.
pub async fn effective(pool: &PgPool) -> Result<WorkingCalendar, StoreError> {
    let mut calendar = WorkingCalendar::builtin();
    let mut conn = pool.acquire().await?;
    for (day, kind) in hotline_store::calendar::all(&mut conn).await? {
        if let Some(kind) = DayKind::parse(&kind) {
            calendar.set(day, kind);
        }
    }
    Ok(calendar)
}

/// Reloads the slot and reports whether next year's schedule is missing (gauge and warning).
pub async fn reload<C: Clock + ?Sized>(
    pool: &PgPool,
    slot: &CalendarSlot,
    clock: &C,
) -> Result<(), StoreError> {
    let calendar = effective(pool).await?;
    let today = clock.now().with_timezone(&china_offset()).date_naive();
    let missing = calendar.missing_years(today);
    metrics::gauge!("hotline_calendar_years_missing").set(missing.len() as f64);
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "the official holiday schedule of these years is not loaded; their deadlines count weekends only \
             (load it with `hotline calendar load FILE` or POST /api/v1/calendar)"
        );
    }
    slot.replace(calendar);
    Ok(())
}

pub async fn run_calendar_reloader<C: Clock>(
    pool: PgPool,
    slot: Arc<CalendarSlot>,
    clock: C,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(error) = reload(&pool, &slot, &clock).await {
            tracing::error!(%error, "calendar reload failed; keeping the current one");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
