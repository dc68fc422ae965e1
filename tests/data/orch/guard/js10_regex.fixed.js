const re = /(abc)/;
