"""Hardware backends. The only package that imports pyserial, pymodbus or RPi.GPIO."""
