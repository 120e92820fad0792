//! DeathStarBench socialNetwork: the requests that seed it from a graph, in three phases.
//!
//! 1. `register`: `POST /wrk2-api/user/register` (form) per user `i` in `0..users` with
//!    `first_name=first_name_i`, `last_name=last_name_i`, `username=username_i`,
//!    `password=password_i`, `user_id=i` — the names DeathStarBench's wrk2 scripts log in with.
//! 2. `follow`: `POST /wrk2-api/user/follow` (form) `user_name=username_a`,
//!    `followee_name=username_b` per edge, and the reverse too with `follow: both`.
//! 3. `compose` (with `posts_per_user`): `POST /wrk2-api/post/compose` (form) `username`,
//!    `user_id`, `text`, `post_type=0`, for users registered by this run only: a user that
//!    existed already has its posts from the run that registered it, so a rerun adds none.
//!
//! Post texts are pseudo-random but the same in every run (seeded per user); they mention other
//! users (`@username_k`, all of them existing) and links, which the compose path parses.

use rand::{Rng, SeedableRng};

use super::graph::Graph;
use super::runner::{Runner, SeedRequest};
use super::Phases;
use crate::config::FollowMode;

/// Register endpoint.
pub const REGISTER: &str = "/wrk2-api/user/register";
/// Follow endpoint.
pub const FOLLOW: &str = "/wrk2-api/user/follow";
/// Compose endpoint.
pub const COMPOSE: &str = "/wrk2-api/post/compose";

/// The registration of user `i`.
pub fn register(i: u64) -> SeedRequest {
    let (first, last, user, pass) = (
        format!("first_name_{i}"),
        format!("last_name_{i}"),
        format!("username_{i}"),
        format!("password_{i}"),
    );
    SeedRequest::form(
        REGISTER,
        &[
            ("first_name", &first),
            ("last_name", &last),
            ("username", &user),
            ("password", &pass),
            ("user_id", &i.to_string()),
        ],
    )
}

/// User `a` follows user `b`.
pub fn follow(a: u64, b: u64) -> SeedRequest {
    SeedRequest::form(
        FOLLOW,
        &[
            ("user_name", &format!("username_{a}")),
            ("followee_name", &format!("username_{b}")),
        ],
    )
}

/// The `n` posts of user `user` among `users` users.
pub fn posts(user: u64, n: u32, users: u64) -> impl Iterator<Item = SeedRequest> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(user);
    (0..n).map(move |_| {
        let text = post_text(&mut rng, users);
        SeedRequest::form(
            COMPOSE,
            &[
                ("username", &format!("username_{user}")),
                ("user_id", &user.to_string()),
                ("text", &text),
                ("post_type", "0"),
            ],
        )
    })
}

fn post_text(rng: &mut impl Rng, users: u64) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let word = |rng: &mut dyn rand::RngCore, len: usize| -> String {
        (0..len)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect()
    };
    let mut text = word(rng, 64);
    for _ in 0..rng.random_range(0..=2) {
        text.push_str(&format!(" @username_{}", rng.random_range(0..users)));
    }
    for _ in 0..rng.random_range(0..=1) {
        text.push_str(&format!(" http://{}.example", word(rng, 16).to_lowercase()));
    }
    text
}

/// Runs the phases; returns early (with the phase's stop recorded) when one stops.
pub(super) fn seed(
    runner: &mut Runner,
    graph: &Graph,
    mode: FollowMode,
    posts_per_user: u32,
    phases: &mut Phases,
) -> Result<(), super::runner::Stop> {
    let users = graph.users;
    let registered =
        phases.push(runner.run_phase("register", REGISTER, users, (0..users).map(register)))?;
    let per_edge = match mode {
        FollowMode::Both => 2,
        FollowMode::Forward => 1,
    };
    let follows = graph.edges.iter().flat_map(move |&(a, b)| {
        let back = (mode == FollowMode::Both).then(|| follow(b, a));
        std::iter::once(follow(a, b)).chain(back)
    });
    phases.push(runner.run_phase(
        "follow",
        FOLLOW,
        graph.edges.len() as u64 * per_edge,
        follows,
    ))?;
    if posts_per_user == 0 {
        return Ok(());
    }
    // `existing` holds the register indexes, which are the user ids.
    let existed: std::collections::HashSet<u64> = registered.into_iter().collect();
    let new_users = users - existed.len() as u64;
    let composes = (0..users)
        .filter(move |u| !existed.contains(u))
        .flat_map(move |u| posts(u, posts_per_user, users));
    let skipped = (users - new_users) * u64::from(posts_per_user);
    let mut out = runner.run_phase(
        "compose",
        COMPOSE,
        new_users * u64::from(posts_per_user),
        composes,
    );
    out.stats.skipped = skipped;
    phases.push(out).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(r: &SeedRequest) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&r.body).into_owned().collect()
    }

    #[test]
    fn register_and_follow_carry_deathstarbench_fields() {
        let r = register(7);
        assert_eq!(r.path, "/wrk2-api/user/register");
        assert_eq!(
            r.body,
            "first_name=first_name_7&last_name=last_name_7&username=username_7&password=password_7&user_id=7"
        );
        let f = follow(1, 0);
        assert_eq!(f.path, "/wrk2-api/user/follow");
        assert_eq!(f.body, "user_name=username_1&followee_name=username_0");
    }

    #[test]
    fn posts_are_the_same_every_run_and_mention_existing_users() {
        let a: Vec<_> = posts(3, 4, 10).collect();
        let b: Vec<_> = posts(3, 4, 10).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        assert_ne!(a[0].body, a[1].body);
        for p in &a {
            let f = fields(p);
            assert_eq!(f[0], ("username".into(), "username_3".into()));
            assert_eq!(f[1], ("user_id".into(), "3".into()));
            assert_eq!(f[3], ("post_type".into(), "0".into()));
            for m in f[2]
                .1
                .split(' ')
                .filter_map(|w| w.strip_prefix("@username_"))
            {
                assert!(m.parse::<u64>().unwrap() < 10, "{m}");
            }
        }
    }
}
