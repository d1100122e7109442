// Write one order to crm.raw.orders.v1 with the Apache Kafka Java client (kafka-clients 3.x).
// Not run here (no Maven repository reachable from this machine); it uses only the
// settings the Python examples prove against the embedded broker.
//
//   javac -cp kafka-clients-3.9.1.jar:slf4j-api.jar OrderProducer.java
//   java -cp .:kafka-clients-3.9.1.jar:slf4j-api.jar OrderProducer
import java.time.OffsetDateTime;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class OrderProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = System.getenv().getOrDefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092");
        String topic = System.getenv().getOrDefault("CRM_TOPIC_NAMESPACE", "") + "crm.raw.orders.v1";
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        String now = OffsetDateTime.now().toString();
        String order = "{\"order_id\":\"JV-1001\",\"customer_id\":\"c-1003\",\"status\":\"paid\","
            + "\"created_at\":\"" + now + "\",\"paid_at\":\"" + now + "\",\"updated_at\":\"" + now + "\","
            + "\"currency\":\"CNY\",\"total_amount\":\"59.90\",\"channel\":\"app\"}";
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            RecordMetadata meta = producer.send(new ProducerRecord<>(topic, "c-1003", order)).get();
            System.out.printf("sent JV-1001 to %s[%d]@%d%n", meta.topic(), meta.partition(), meta.offset());
        }
    }
}
