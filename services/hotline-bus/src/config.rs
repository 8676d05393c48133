use hotline_events::Stream;
use rdkafka::ClientConfig;

/// How to reach the broker and name the topics. Built by the binaries from the environment.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// Prefix of every topic name, e.g. `hotline.`; tests use a random one.
    pub topic_prefix: String,
    /// Prefix of every consumer group name (empty by default: `hotline-router`, …). Deployments
    /// that share a cluster need their own groups as well as their own topics.
    pub group_prefix: String,
    pub partitions: i32,
    pub replication: i32,
    /// How long the group waits for a silent consumer before giving its partitions to others.
    pub session_timeout_ms: u32,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, …) for production clusters.
    pub client_properties: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn local(brokers: &str, topic_prefix: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic_prefix: topic_prefix.to_owned(),
            group_prefix: String::new(),
            partitions: 3,
            replication: 1,
            session_timeout_ms: 10_000,
            client_properties: Vec::new(),
        }
    }

    pub fn topic(&self, stream: Stream) -> String {
        format!("{}{}.v1", self.topic_prefix, stream.as_str())
    }

    /// The consumer group of a worker.
    pub fn group(&self, worker: &str) -> String {
        format!("{}{worker}", self.group_prefix)
    }

    pub fn dead_letter_topic(&self) -> String {
        format!("{}dead-letter.v1", self.topic_prefix)
    }

    pub fn all_topics(&self) -> Vec<String> {
        vec![
            self.topic(Stream::Appeals),
            self.topic(Stream::Cases),
            self.topic(Stream::Proactive),
            self.dead_letter_topic(),
        ]
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.client_properties {
            config.set(key, value);
        }
        config
    }
}
