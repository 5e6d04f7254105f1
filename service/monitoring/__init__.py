"""What operators watch: Prometheus metrics, drift (PSI), frozen-sensor change tracking, calibrated
alarms.
"""
