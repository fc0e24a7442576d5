//! The names the model sees: `{server}__{tool}`, valid OpenAI function names
//! (`^[A-Za-z0-9_-]{1,64}$`), shortened and de-duplicated deterministically.
