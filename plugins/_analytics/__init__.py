"""Operations analytics: the numbers private-traffic teams are judged on, computed from the
event store and the customer book (never from message text), rendered as one offline HTML
report with charts plus a CSV file per table."""
