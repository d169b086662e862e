"""Face geometry: landmark schemes, crops, head pose."""
