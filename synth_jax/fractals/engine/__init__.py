"""The device renderer every family draws with: counter-based random streams, iterated function
systems and the chaos game (`render`), rasterisation and image operations, the orbit engine of
the contour families, Perlin and plasma noise, and the data-config keys all families share."""
