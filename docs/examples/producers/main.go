// Write one order to crm.raw.orders.v1 with github.com/segmentio/kafka-go.
// Not run here (no Go toolchain on this machine).
//
//   go mod init producer && go get github.com/segmentio/kafka-go && go run main.go
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
)

func main() {
	bootstrap := os.Getenv("KAFKA_BOOTSTRAP_SERVERS")
	if bootstrap == "" {
		bootstrap = "127.0.0.1:9092"
	}
	now := time.Now().Format(time.RFC3339)
	order := map[string]any{
		"order_id": "GO-1001", "customer_id": "c-1004", "status": "paid",
		"created_at": now, "paid_at": now, "updated_at": now,
		"currency": "CNY", "total_amount": "120.00", "channel": "douyin",
	}
	value, _ := json.Marshal(order)
	writer := &kafka.Writer{
		Addr:         kafka.TCP(bootstrap),
		Topic:        os.Getenv("CRM_TOPIC_NAMESPACE") + "crm.raw.orders.v1",
		Balancer:     &kafka.Hash{}, // by key: one customer's orders on one partition
		RequiredAcks: kafka.RequireAll,
	}
	defer writer.Close()
	err := writer.WriteMessages(context.Background(), kafka.Message{Key: []byte("c-1004"), Value: value})
	if err != nil {
		fmt.Fprintln(os.Stderr, "send failed:", err)
		os.Exit(1)
	}
	fmt.Println("sent GO-1001")
}
