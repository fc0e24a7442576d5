//! Anthropic Messages: the codec between its requests, answers and stream
//! events and the model.
