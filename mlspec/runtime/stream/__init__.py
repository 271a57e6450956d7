"""`mlspec stream`: score a streaming serve block's events as they arrive on a Redis stream.

events.py    a stream entry -> a typed, validated source row, or the reasons it is dead-lettered
delivery.py  Redis Streams plumbing: consumer group, reclaiming, the atomic output + ack
consumer.py  the loop: validate, append to the online store, online features, score, commit
metrics.py   Prometheus metrics; http.py /health, /ready and /metrics on a side thread
commands.py  argument parsing and process wiring only
"""
