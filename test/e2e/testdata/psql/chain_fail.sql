-- One Query message whose last part fails: none of it may stay.
INSTALL EXTENSION bar \; SELECT bar_version() \; SELECT 1/0;
