//! What refreshing only used credentials saves: a day-by-day model of a
//! population, with the policy's own defaults ([`DuePolicy::default`]).
//!
//! ```sh
//! cargo bench -p gateway-core --bench refresh_policy
//! ```
//!
//! `SIM_USERS` (1 000 000) credentials, one per user, with hour-long tokens
//! (Google's), simulated hour by hour for five weeks; the last four weeks are
//! reported. The population (weekdays ≈ 10 % of credentials used, weekends
//! ≈ 1.6 %):
//! - 6 % **daily** users: every weekday, 10 requests spread over a working day
//!   that starts between 08:00 and 11:00;
//! - 12 % **weekly** users: one random weekday a week, 5 requests in an hour;
//! - 82 % **rare** users: any day with probability 1/50, 3 requests in an hour.
//!
//! Each hour, as the proactive refresh job sees it: a credential used (or
//! authorized) within `active` has its token refreshed ahead (one provider
//! call, nobody waits); any other credential not refreshed for `keepalive`
//! is refreshed to keep its grant alive. A request finding no valid token
//! waits for one on-demand refresh (single-flight: the others of that hour are
//! served from memory). "Before" is the old policy, every credential refreshed
//! ahead (`REFRESH_ACTIVE_HOURS=0`).
//!
//! A model, not a measurement: it counts what the rules imply for this
//! population. The rules themselves are tested against real databases in
//! `gateway/tests/api/workers.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_core::credentials::due::DuePolicy;

/// A small deterministic generator (xorshift64*): the same population every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Class {
    Daily { start: u8 },
    Weekly { day: u8 },
    Rare,
}

/// The hours of `day` in which this user makes requests, and how many.
fn requests(class: Class, day: u64, rng: &mut Rng) -> Vec<(u8, u32)> {
    let weekday = day % 7 < 5;
    match class {
        Class::Daily { start } if weekday => (0..10).map(|i| (start + (i * 8 / 10) as u8, 1)).collect(),
        Class::Weekly { day: d } if weekday && u64::from(d) == day % 7 => vec![(9 + rng.below(8) as u8, 5)],
        Class::Rare if rng.below(50) == 0 => vec![(8 + rng.below(12) as u8, 3)],
        _ => Vec::new(),
    }
}

#[derive(Default, Debug)]
struct Tally {
    proactive: u64,
    keepalive: u64,
    on_demand: u64,
    requests: u64,
    users_active: u64,
}

impl Tally {
    fn calls(&self) -> u64 {
        self.proactive + self.keepalive + self.on_demand
    }
}

/// Runs the model with `active` (None: refresh everyone ahead) and `keepalive`, in hours.
fn simulate(users: usize, active: Option<u64>, keepalive: u64, days: u64, measured_from: u64) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let classes: Vec<Class> = (0..users)
        .map(|_| match rng.below(100) {
            0..=5 => Class::Daily { start: 8 + rng.below(4) as u8 },
            6..=17 => Class::Weekly { day: rng.below(5) as u8 },
            _ => Class::Rare,
        })
        .collect();
    // Authorized a month before the run starts; never used yet.
    let long_ago = -(30 * 24);
    let mut last_use = vec![long_ago; users];
    let mut last_refresh = vec![long_ago; users];
    let mut tally = Tally::default();
    let mut today: Vec<Vec<(u8, u32)>> = vec![Vec::new(); users];
    for day in 0..days {
        let measured = day >= measured_from;
        for (u, class) in classes.iter().enumerate() {
            today[u] = requests(*class, day, &mut rng);
            if measured && !today[u].is_empty() {
                tally.users_active += 1;
            }
        }
        for hour in 0..24u8 {
            let now = i64::try_from(day * 24).unwrap() + i64::from(hour);
            for u in 0..users {
                let in_use = active.is_none_or(|a| now - last_use[u] <= i64::try_from(a).unwrap());
                if in_use {
                    last_refresh[u] = now;
                    tally.proactive += u64::from(measured);
                } else if now - last_refresh[u] >= i64::try_from(keepalive).unwrap() {
                    last_refresh[u] = now;
                    tally.keepalive += u64::from(measured);
                }
                for &(h, n) in &today[u] {
                    if h != hour {
                        continue;
                    }
                    if last_refresh[u] != now {
                        last_refresh[u] = now;
                        tally.on_demand += u64::from(measured);
                    }
                    tally.requests += u64::from(n) * u64::from(measured);
                    last_use[u] = now;
                }
            }
        }
    }
    tally
}

fn main() {
    let users: usize = std::env::var("SIM_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let policy = DuePolicy::default();
    let active_hours = policy.active.map(|a| a.as_secs() / 3600);
    let keepalive_hours = policy.keepalive.as_secs() / 3600;
    let (days, from) = (35, 7);
    let measured_days = (days - from) as f64;
    let per_day = |n: u64| n as f64 / measured_days;

    println!("refresh policy model: {users} credentials, hour-long tokens, 4 weeks measured after 1 week");
    let before = simulate(users, None, keepalive_hours, days, from);
    println!(
        "share of credentials used per day: {:.1} % (weekdays ≈ 10 %, weekends ≈ 1.6 %)",
        100.0 * per_day(before.users_active) / users as f64
    );
    println!("before (every credential refreshed ahead): {:.0} provider calls/day", per_day(before.calls()));
    for keepalive in [keepalive_hours, 7 * 24] {
        let after = simulate(users, active_hours, keepalive, days, from);
        println!(
            "after (REFRESH_ACTIVE_HOURS={}, REFRESH_KEEPALIVE_HOURS={keepalive}): {:.0} provider calls/day \
             ({:.0} ahead, {:.0} keep-alive, {:.0} on demand), {:.1}x fewer; requests waiting on a provider: {:.2} %",
            active_hours.unwrap_or(0),
            per_day(after.calls()),
            per_day(after.proactive),
            per_day(after.keepalive),
            per_day(after.on_demand),
            before.calls() as f64 / after.calls() as f64,
            100.0 * after.on_demand as f64 / after.requests as f64,
        );
    }
}
