//! The budget gate: before every LLM call, reserve the call's worst case.
//!
//! Worst case = prompt tokens × input price + max completion tokens × output
//! price. A call goes ahead only if what the job has spent plus that worst
//! case stays within the job's USD budget and the installation's daily cap,
//! the request count stays within its budget, and the wall clock has not run
//! out. So a job never ends above a budget: it stops before the call that
//! could cross it. After the call, the reservation is replaced by the real
//! cost from the endpoint's usage numbers.

use std::time::Duration;

use crate::pricing::{PriceLookup, Pricing};

/// A job's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub usd: f64,
    pub requests: u32,
    pub wall_clock: Duration,
    /// What the installation may still spend today, across all its jobs.
    pub daily_remaining_usd: f64,
}

/// Which limit stopped a call; the codes are the job's `status_reason` codes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetExceeded {
    #[error(
        "budget_usd: the next call could cost ${worst_case:.4}, and ${spent:.4} of the job's ${limit:.2} is spent"
    )]
    Usd { spent: f64, worst_case: f64, limit: f64 },
    #[error("budget_requests: the job has made its {limit} LLM requests")]
    Requests { limit: u32 },
    #[error("budget_minutes: the job has run for its {minutes} minutes")]
    Minutes { minutes: u64 },
    #[error(
        "daily_cap: the installation's daily spending cap leaves ${remaining:.4}, the next call could cost ${worst_case:.4}"
    )]
    DailyCap { remaining: f64, worst_case: f64 },
}

impl BudgetExceeded {
    /// The `status_reason` code.
    pub fn code(&self) -> &'static str {
        match self {
            BudgetExceeded::Usd { .. } => "budget_usd",
            BudgetExceeded::Requests { .. } => "budget_requests",
            BudgetExceeded::Minutes { .. } => "budget_minutes",
            BudgetExceeded::DailyCap { .. } => "daily_cap",
        }
    }
}

/// What a job has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub usd: f64,
    pub requests: u32,
    pub elapsed: Duration,
    /// Spent today by the installation before this job's calls, included in
    /// `Limits::daily_remaining_usd` already.
    pub usd_today_by_this_job: f64,
}

/// The worst-case cost of a call, in USD.
pub fn worst_case_usd(pricing: &Pricing, model: &str, prompt_tokens: u64, max_completion_tokens: u32) -> f64 {
    match pricing.lookup(model) {
        PriceLookup::Priced(p) => {
            (prompt_tokens as f64 * p.input + f64::from(max_completion_tokens) * p.output) / 1000.0
        }
        PriceLookup::Free | PriceLookup::Unknown => 0.0,
    }
}

/// Checks whether a call whose worst case is `worst_case` may go ahead.
pub fn check(limits: &Limits, spent: &Spent, worst_case: f64) -> Result<(), BudgetExceeded> {
    if spent.elapsed >= limits.wall_clock {
        return Err(BudgetExceeded::Minutes {
            minutes: limits.wall_clock.as_secs() / 60,
        });
    }
    if spent.requests >= limits.requests {
        return Err(BudgetExceeded::Requests {
            limit: limits.requests,
        });
    }
    if spent.usd + worst_case > limits.usd {
        return Err(BudgetExceeded::Usd {
            spent: spent.usd,
            worst_case,
            limit: limits.usd,
        });
    }
    let remaining = limits.daily_remaining_usd - spent.usd_today_by_this_job;
    if worst_case > remaining {
        return Err(BudgetExceeded::DailyCap {
            remaining: remaining.max(0.0),
            worst_case,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            usd: 1.0,
            requests: 3,
            wall_clock: Duration::from_secs(600),
            daily_remaining_usd: 10.0,
        }
    }

    #[test]
    fn the_worst_case_uses_prompt_and_max_completion_prices() {
        let pricing = Pricing::parse(crate::pricing::BUILT_IN, "test").unwrap();
        let w = worst_case_usd(&pricing, "gpt-4.1", 10_000, 1_000);
        assert!((w - (10.0 * 0.002 + 1.0 * 0.008)).abs() < 1e-12, "{w}");
        assert_eq!(worst_case_usd(&pricing, "ollama/llama3", 10_000, 1_000), 0.0);
    }

    #[test]
    fn a_call_that_could_cross_the_budget_is_refused_before_it_is_made() {
        let spent = Spent {
            usd: 0.9,
            requests: 1,
            ..Spent::default()
        };
        assert_eq!(
            check(&limits(), &spent, 0.1),
            Ok(()),
            "exactly at the limit is allowed"
        );
        let err = check(&limits(), &spent, 0.11).unwrap_err();
        assert_eq!(err.code(), "budget_usd");
        assert!(err.to_string().starts_with("budget_usd: "));
    }

    #[test]
    fn requests_wall_clock_and_daily_cap_are_checked() {
        let spent = Spent {
            requests: 3,
            ..Spent::default()
        };
        assert_eq!(
            check(&limits(), &spent, 0.0).unwrap_err().code(),
            "budget_requests"
        );
        let spent = Spent {
            elapsed: Duration::from_secs(600),
            ..Spent::default()
        };
        assert_eq!(
            check(&limits(), &spent, 0.0).unwrap_err().code(),
            "budget_minutes"
        );
        let tight = Limits {
            daily_remaining_usd: 0.05,
            ..limits()
        };
        let spent = Spent {
            usd_today_by_this_job: 0.04,
            ..Spent::default()
        };
        assert_eq!(check(&tight, &spent, 0.02).unwrap_err().code(), "daily_cap");
        assert_eq!(check(&tight, &spent, 0.01), Ok(()));
    }
}
