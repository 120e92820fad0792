//! DeathStarBench mediaMicroservices: the requests that seed it from a TMDB dataset, in phases.
//!
//! 1. `cast-info`: `POST /wrk2-api/cast-info/write` (JSON) `{cast_info_id, name, gender, intro}`
//!    per person (`gender` is true for TMDB's 2).
//! 2. `movie-info`: `POST /wrk2-api/movie-info/write` (JSON) `{movie_id (a string), title,
//!    plot_id, casts: [{cast_id, character, cast_info_id}], thumbnail_ids: [poster_path],
//!    photo_ids: [], video_ids: [], avg_rating, num_rating}` per movie.
//! 3. `plot`: `POST /wrk2-api/plot/write` (JSON) `{plot_id, plot}` per movie.
//! 4. `movie`: `POST /wrk2-api/movie/register` (form) `title`, `movie_id` per movie, which the
//!    review path looks titles up in.
//! 5. `user`: `POST /wrk2-api/user/register` (form) `first_name_i`, `last_name_i`,
//!    `username_i`, `password_i` for `i` in `1..=users`, the names the compose-review script
//!    uses.
//!
//! The phases run one after the other, so a movie's casts exist before its info refers to them.

use serde_json::json;

use super::runner::{Runner, SeedRequest, Stop};
use super::tmdb::{Cast, Dataset, Movie};
use super::Phases;

/// Cast-info endpoint.
pub const CAST_INFO: &str = "/wrk2-api/cast-info/write";
/// Movie-info endpoint.
pub const MOVIE_INFO: &str = "/wrk2-api/movie-info/write";
/// Plot endpoint.
pub const PLOT: &str = "/wrk2-api/plot/write";
/// Movie id endpoint.
pub const MOVIE: &str = "/wrk2-api/movie/register";
/// User endpoint.
pub const USER: &str = "/wrk2-api/user/register";

/// The cast-info record of a person.
pub fn cast_info(c: &Cast) -> SeedRequest {
    SeedRequest::json(
        CAST_INFO,
        &json!({"cast_info_id": c.id, "name": c.name, "gender": c.male, "intro": c.intro}),
    )
}

/// The movie-info record of a movie.
pub fn movie_info(m: &Movie) -> SeedRequest {
    let casts: Vec<_> = m
        .credits
        .iter()
        .map(|c| json!({"cast_id": c.cast_id, "character": c.character, "cast_info_id": c.person}))
        .collect();
    SeedRequest::json(
        MOVIE_INFO,
        &json!({
            "movie_id": m.id.to_string(),
            "title": m.title,
            "plot_id": m.id,
            "casts": casts,
            "thumbnail_ids": m.poster.iter().collect::<Vec<_>>(),
            "photo_ids": [],
            "video_ids": [],
            "avg_rating": m.avg_rating,
            "num_rating": m.num_rating,
        }),
    )
}

/// The plot of a movie.
pub fn plot(m: &Movie) -> SeedRequest {
    SeedRequest::json(PLOT, &json!({"plot_id": m.id, "plot": m.plot}))
}

/// The title-to-id registration of a movie.
pub fn register_movie(m: &Movie) -> SeedRequest {
    SeedRequest::form(
        MOVIE,
        &[("title", &m.title), ("movie_id", &m.id.to_string())],
    )
}

/// The registration of user `i`.
pub fn register_user(i: u64) -> SeedRequest {
    SeedRequest::form(
        USER,
        &[
            ("first_name", &format!("first_name_{i}")),
            ("last_name", &format!("last_name_{i}")),
            ("username", &format!("username_{i}")),
            ("password", &format!("password_{i}")),
        ],
    )
}

/// Runs the phases; returns early (with the phase's stop recorded) when one stops.
pub(super) fn seed(
    runner: &mut Runner,
    data: &Dataset,
    users: u64,
    phases: &mut Phases,
) -> Result<(), Stop> {
    let movies = data.movies.len() as u64;
    let mut casts = runner.run_phase(
        "cast-info",
        CAST_INFO,
        data.casts.len() as u64,
        data.casts.iter().map(cast_info),
    );
    casts.stats.skipped = data.skipped_casts;
    phases.push(casts)?;
    let mut info = runner.run_phase(
        "movie-info",
        MOVIE_INFO,
        movies,
        data.movies.iter().map(movie_info),
    );
    info.stats.skipped = data.skipped_movies;
    phases.push(info)?;
    phases.push(runner.run_phase("plot", PLOT, movies, data.movies.iter().map(plot)))?;
    phases.push(runner.run_phase(
        "movie",
        MOVIE,
        movies,
        data.movies.iter().map(register_movie),
    ))?;
    phases.push(runner.run_phase("user", USER, users, (1..=users).map(register_user)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::tmdb::Credit;

    fn movie() -> Movie {
        Movie {
            id: 299534,
            title: "Avengers: Endgame".into(),
            plot: "After...".into(),
            poster: Some("/p.jpg".into()),
            avg_rating: 8.3,
            num_rating: 9000,
            credits: vec![Credit {
                cast_id: 2,
                character: "Tony Stark".into(),
                person: 3223,
            }],
        }
    }

    fn body(r: &SeedRequest) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn movie_records_have_the_fields_the_write_endpoints_require() {
        let m = movie();
        let r = movie_info(&m);
        assert_eq!((r.path, r.content_type), (MOVIE_INFO, "application/json"));
        assert_eq!(
            body(&r),
            json!({"movie_id": "299534", "title": "Avengers: Endgame", "plot_id": 299534,
                   "casts": [{"cast_id": 2, "character": "Tony Stark", "cast_info_id": 3223}],
                   "thumbnail_ids": ["/p.jpg"], "photo_ids": [], "video_ids": [],
                   "avg_rating": 8.3, "num_rating": 9000})
        );
        let no_poster = Movie {
            poster: None,
            ..m.clone()
        };
        assert_eq!(body(&movie_info(&no_poster))["thumbnail_ids"], json!([]));
        assert_eq!(
            body(&plot(&m)),
            json!({"plot_id": 299534, "plot": "After..."})
        );
        let r = register_movie(&m);
        assert_eq!(r.body, "title=Avengers%3A+Endgame&movie_id=299534");
    }

    #[test]
    fn cast_and_user_records() {
        let c = Cast {
            id: 1,
            name: "A B".into(),
            male: false,
            intro: String::new(),
        };
        assert_eq!(
            body(&cast_info(&c)),
            json!({"cast_info_id": 1, "name": "A B", "gender": false, "intro": ""})
        );
        assert_eq!(
            register_user(1).body,
            "first_name=first_name_1&last_name=last_name_1&username=username_1&password=password_1"
        );
    }
}
