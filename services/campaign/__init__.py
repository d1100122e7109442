"""Campaign: campaigns, audiences, holdouts, message requests, conversion evaluation."""
