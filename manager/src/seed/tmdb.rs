//! The media service's dataset: DeathStarBench's `datasets/tmdb/casts.json` (TMDB person
//! records) and `movies.json` (TMDB movies, each with up to ten credits in `cast`), read into
//! the fields the media service's write endpoints take.
//!
//! TMDB records carry many more fields; only these are read. DeathStarBench's download scripts
//! store TMDB's error answers (`{"status_code": 34, ...}`) in the same arrays, so a record
//! without an `id` (or a movie without a `title`, a person without a `name`) is skipped and
//! counted, as the original script did; a field of the wrong type is an error with its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A person (cast member).
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    /// TMDB person id (`cast_info_id`).
    pub id: i64,
    /// Name.
    pub name: String,
    /// True when TMDB's gender is 2 (male), as DeathStarBench's script maps it.
    pub male: bool,
    /// Biography (`intro`); empty when TMDB has none.
    pub intro: String,
}

/// One credit of a movie.
#[derive(Clone, Debug, PartialEq)]
pub struct Credit {
    /// TMDB's credit `cast_id`.
    pub cast_id: i64,
    /// The role played.
    pub character: String,
    /// The person's id (`cast_info_id`).
    pub person: i64,
}

/// A movie.
#[derive(Clone, Debug, PartialEq)]
pub struct Movie {
    /// TMDB movie id (also its plot id).
    pub id: i64,
    /// Title.
    pub title: String,
    /// Plot text (`overview`).
    pub plot: String,
    /// Poster path, when TMDB has one.
    pub poster: Option<String>,
    /// Average rating.
    pub avg_rating: f64,
    /// Number of ratings.
    pub num_rating: i64,
    /// Credits with a person id (others are dropped).
    pub credits: Vec<Credit>,
}

/// A dataset directory's contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Persons.
    pub casts: Vec<Cast>,
    /// Movies.
    pub movies: Vec<Movie>,
    /// Records skipped for lack of `id`/`name` in casts.json.
    pub skipped_casts: u64,
    /// Records skipped for lack of `id`/`title` in movies.json.
    pub skipped_movies: u64,
}

/// A dataset file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is malformed or a field has the wrong type.
    #[error("{}:{line}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// serde_json's error (its message ends with the line and column).
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct RawCast {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    gender: Option<i64>,
    #[serde(default)]
    biography: Option<String>,
}

#[derive(Deserialize)]
struct RawCredit {
    #[serde(default)]
    cast_id: Option<i64>,
    #[serde(default)]
    character: Option<String>,
    #[serde(default)]
    id: Option<i64>,
}

#[derive(Deserialize)]
struct RawMovie {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    overview: Option<String>,
    #[serde(default)]
    poster_path: Option<String>,
    #[serde(default)]
    vote_average: Option<f64>,
    #[serde(default)]
    vote_count: Option<i64>,
    #[serde(default)]
    cast: Option<Vec<RawCredit>>,
}

/// Reads `casts.json` and `movies.json` from a dataset directory.
pub fn load(dir: &Path) -> Result<Dataset, DatasetError> {
    let raw_casts: Vec<RawCast> = read_json(&dir.join("casts.json"))?;
    let raw_movies: Vec<RawMovie> = read_json(&dir.join("movies.json"))?;
    let mut d = Dataset::default();
    for c in raw_casts {
        match (c.id, c.name) {
            (Some(id), Some(name)) => d.casts.push(Cast {
                id,
                name,
                male: c.gender == Some(2),
                intro: c.biography.unwrap_or_default(),
            }),
            _ => d.skipped_casts += 1,
        }
    }
    for m in raw_movies {
        let (Some(id), Some(title)) = (m.id, m.title) else {
            d.skipped_movies += 1;
            continue;
        };
        let credits = m
            .cast
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                Some(Credit {
                    cast_id: c.cast_id.unwrap_or_default(),
                    character: c.character.unwrap_or_default(),
                    person: c.id?,
                })
            })
            .collect();
        d.movies.push(Movie {
            id,
            title,
            plot: m.overview.unwrap_or_default(),
            poster: m.poster_path,
            avg_rating: m.vote_average.unwrap_or_default(),
            num_rating: m.vote_count.unwrap_or_default(),
            credits,
        });
    }
    Ok(d)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DatasetError::Json {
        path: path.to_path_buf(),
        line: source.line(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(casts: &str, movies: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("casts.json"), casts).unwrap();
        std::fs::write(tmp.path().join("movies.json"), movies).unwrap();
        tmp
    }

    const CASTS: &str = r#"[
  {"id": 3223, "name": "Robert Downey Jr.", "gender": 2, "biography": "An actor.", "popularity": 9.1},
  {"id": 1245, "name": "Scarlett Johansson", "gender": 1, "biography": null},
  {"status_code": 34, "status_message": "The resource you requested could not be found."}
]"#;

    const MOVIES: &str = r#"[
  {"id": 299534, "title": "Avengers: Endgame", "overview": "After the devastating events...",
   "poster_path": "/or06FN3Dka5tukK1e9sl16pB3iy.jpg", "vote_average": 8.3, "vote_count": 9000,
   "cast": [{"cast_id": 2, "character": "Tony Stark / Iron Man", "id": 3223, "order": 0},
            {"cast_id": 7, "character": "Extra"}]},
  {"id": 1, "title": "No poster", "poster_path": null, "cast": []},
  {"status_code": 34}
]"#;

    #[test]
    fn reads_the_fields_the_media_service_takes() {
        let tmp = dir(CASTS, MOVIES);
        let d = load(tmp.path()).unwrap();
        assert_eq!(d.casts.len(), 2);
        assert_eq!(d.skipped_casts, 1);
        assert_eq!(
            d.casts[0],
            Cast {
                id: 3223,
                name: "Robert Downey Jr.".into(),
                male: true,
                intro: "An actor.".into()
            }
        );
        assert!(!d.casts[1].male);
        assert_eq!(d.casts[1].intro, "");
        assert_eq!(d.movies.len(), 2);
        assert_eq!(d.skipped_movies, 1);
        let m = &d.movies[0];
        assert_eq!((m.id, m.title.as_str()), (299534, "Avengers: Endgame"));
        assert_eq!(
            m.poster.as_deref(),
            Some("/or06FN3Dka5tukK1e9sl16pB3iy.jpg")
        );
        assert_eq!((m.avg_rating, m.num_rating), (8.3, 9000));
        // The credit without a person id is dropped.
        assert_eq!(
            m.credits,
            vec![Credit {
                cast_id: 2,
                character: "Tony Stark / Iron Man".into(),
                person: 3223
            }]
        );
        assert_eq!(d.movies[1].poster, None);
        assert_eq!(d.movies[1].plot, "");
    }

    #[test]
    fn wrong_types_and_bad_json_name_file_and_line() {
        let tmp = dir(CASTS, "[\n  {\"id\": \"299534\", \"title\": \"x\"}\n]");
        let e = load(tmp.path()).unwrap_err();
        assert!(matches!(e, DatasetError::Json { line: 2, .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("movies.json:2: invalid type: string \"299534\""),
            "{e}"
        );
        let tmp = dir("[\n{\"id\": 1,\n", MOVIES);
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("casts.json:3: EOF while parsing"), "{e}");
        let tmp = dir("{\"id\": 1}", MOVIES);
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("casts.json:1: invalid type: map, expected a sequence"),
            "{e}"
        );
    }
}
