//! Where agent answers come from: a source the hub is given, so the protocol logic streams any
//! answer (a model behind an API, a script for tests and the demo) the same way.

/// Produces the answer to an `agent_prompt`, as the chunks the hub streams one by one.
pub trait AgentSource: Send {
    /// The chunks answering `prompt`, in order; an empty answer ends the stream at once.
    fn answer(&mut self, prompt: &str) -> Vec<String>;
}

/// A deterministic answer of `chunks` words that repeats its text as needed, for tests and the demo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedAgent {
    /// Chunks per answer (at least 1).
    pub chunks: u32,
}

impl Default for ScriptedAgent {
    fn default() -> Self {
        ScriptedAgent { chunks: 20 }
    }
}

impl AgentSource for ScriptedAgent {
    fn answer(&mut self, prompt: &str) -> Vec<String> {
        let answer = format!(
            "You asked: \"{prompt}\". Here is a deterministic answer streamed by the sockline hub, one word at a time, so interruption and resume can be seen and tested"
        );
        let words: Vec<&str> = answer.split(' ').collect();
        (0..self.chunks.max(1) as usize)
            .map(|i| format!("{} ", words[i % words.len()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_answers_have_the_asked_length_and_quote_the_prompt() {
        let mut a = ScriptedAgent { chunks: 3 };
        assert_eq!(a.answer("hi"), ["You ", "asked: ", "\"hi\". "]);
        let long = ScriptedAgent { chunks: 100 }.answer("x");
        assert_eq!(long.len(), 100);
        assert!(long.iter().all(|c| c.ends_with(' ') && c.len() > 1));
        assert!(
            long.concat().matches("You asked").count() >= 2,
            "the text repeats"
        );
    }
}
